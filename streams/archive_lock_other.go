//go:build !unix

package streams

// Lock is a no-op where flock is not available; the archiver lease in
// Redis still keeps two archive runs of a cluster apart.
func (a *Archive) Lock() (unlock func(), err error) { return func() {}, nil }
