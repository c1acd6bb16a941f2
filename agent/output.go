package agent

import (
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/celeroot/celeroot/events"
)

// Output batching bounds: a chunk is sent when it reaches chunkSize bytes
// or has waited flushEvery, whichever comes first.
const (
	chunkSize  = 16 << 10
	flushEvery = 100 * time.Millisecond
	// logMaxEntries caps the entries of a task's log stream, a second bound
	// besides the byte limit.
	logMaxEntries = 10000
)

// output turns a task's stdout and stderr into task.log events. Writes
// never block on Redis for long and never fail: a log that cannot be
// written is reported in the agent's own log, and the task goes on.
type output struct {
	mu        sync.Mutex
	send      func(events.TaskLog)
	taskID    string
	attempt   int64
	limit     int64
	written   int64
	seq       int64
	truncated bool
	marked    bool // the truncation marker was sent
	bufs      map[string]*strings.Builder
	order     []string
	stop      chan struct{}
	done      chan struct{}
}

func newOutput(taskID string, attempt, limit int64, send func(events.TaskLog)) *output {
	o := &output{send: send, taskID: taskID, attempt: attempt, limit: limit,
		bufs: map[string]*strings.Builder{}, stop: make(chan struct{}), done: make(chan struct{})}
	go o.flusher()
	return o
}

func (o *output) flusher() {
	defer close(o.done)
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-o.stop:
			o.flush()
			return
		case <-t.C:
			o.flush()
		}
	}
}

// stream returns the io.Writer of one stream ("stdout" or "stderr").
func (o *output) stream(name string) *streamWriter { return &streamWriter{o: o, name: name} }

// Close flushes what is buffered and stops the flusher.
func (o *output) Close() {
	close(o.stop)
	<-o.done
}

func (o *output) write(name string, p []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.truncated {
		return
	}
	room := o.limit - o.written
	if int64(len(p)) > room {
		p = p[:max(room, 0)]
		o.truncated = true
	}
	o.written += int64(len(p))
	b := o.bufs[name]
	if b == nil {
		b = &strings.Builder{}
		o.bufs[name] = b
	}
	if b.Len() == 0 {
		o.order = append(o.order, name)
	}
	b.Write(p)
	if b.Len() >= chunkSize || o.truncated {
		o.flushLocked()
	}
}

func (o *output) flush() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.flushLocked()
}

func (o *output) flushLocked() {
	for _, name := range o.order {
		b := o.bufs[name]
		if b.Len() == 0 {
			continue
		}
		data := b.String()
		b.Reset()
		// Keep a multi-byte character whole across chunks.
		if cut := incompleteTail(data); cut > 0 && !o.truncated {
			b.WriteString(data[len(data)-cut:])
			data = data[:len(data)-cut]
		}
		o.seq++
		o.send(events.TaskLog{TaskID: o.taskID, Attempt: o.attempt, Stream: name, Seq: o.seq,
			Data: strings.ToValidUTF8(data, "\uFFFD")})
	}
	o.order = o.order[:0]
	for name, b := range o.bufs {
		if b.Len() > 0 {
			o.order = append(o.order, name)
		}
	}
	if o.truncated && !o.marked {
		o.marked = true
		o.seq++
		o.send(events.TaskLog{TaskID: o.taskID, Attempt: o.attempt, Stream: "stderr", Seq: o.seq,
			Data: fmt.Sprintf("celeroot: output truncated: this task's log limit of %d bytes was reached\n", o.limit), Truncated: true})
	}
}

// incompleteTail returns how many trailing bytes of s start a UTF-8
// character that is not complete yet (0 if none).
func incompleteTail(s string) int {
	for i := 1; i <= 3 && i <= len(s); i++ {
		c := s[len(s)-i]
		if c < 0x80 {
			return 0
		}
		if utf8.RuneStart(c) {
			if !utf8.FullRuneInString(s[len(s)-i:]) {
				return i
			}
			return 0
		}
	}
	return 0
}

type streamWriter struct {
	o    *output
	name string
}

func (w *streamWriter) Write(p []byte) (int, error) {
	w.o.write(w.name, p)
	return len(p), nil
}
