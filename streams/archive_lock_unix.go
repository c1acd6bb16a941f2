//go:build unix

package streams

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Lock takes an exclusive lock on the archive directory (flock on
// DIR/.lock), so two processes on this host never write it at once. It
// fails at once if another process holds it.
func (a *Archive) Lock() (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(a.dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("archive %s: %w", a.dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("archive %s is being written by another process on this host", a.dir)
		}
		return nil, fmt.Errorf("archive %s: lock: %w", a.dir, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
