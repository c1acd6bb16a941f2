package streams

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/redis/go-redis/v9"
)

// The archive keeps the event store beyond its retention in Redis: a
// directory of JSON-lines files, one line per event in the format of
// `events replay -o jsonl` (Line), per shard in entry ID order:
//
//	DIR/ARCHIVE                      identity: archive id, cluster, shard count
//	DIR/shard-003/<first-id>.jsonl   segments of shard 3, named by their first entry
//
// Lines are appended and fsynced before the shard's archive watermark in
// Redis is advanced, and the trim never goes above the watermark, so no
// event leaves Redis before it is on disk. A run that crashes leaves at
// most a torn last line, which the next run cuts off; the next run resumes
// after the last complete line in the files (not after the watermark,
// which may lag the files), so there is no gap and no duplicate line.

// ArchiveSegmentBytes is the size past which a shard's archive starts a
// new segment file.
const ArchiveSegmentBytes = 64 << 20

// archiveIdentityFile names an archive directory's identity file.
const archiveIdentityFile = "ARCHIVE"

type archiveIdentity struct {
	ID      string    `json:"id"`
	Cluster string    `json:"cluster"`
	Shards  int       `json:"shards"`
	Created time.Time `json:"created"`
}

// Archive is an archive directory of one cluster.
type Archive struct {
	dir string
	id  archiveIdentity
}

// ErrNoArchive is returned by OpenArchive for a directory that holds no
// archive (and create is false).
var ErrNoArchive = errors.New("streams: not a celeroot archive")

// OpenArchive opens the archive of the cluster named by keys in dir. With
// create, a missing or empty directory becomes a new archive.
func OpenArchive(dir string, keys Keys, create bool) (*Archive, error) {
	a := &Archive{dir: dir}
	b, err := os.ReadFile(filepath.Join(dir, archiveIdentityFile))
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &a.id); err != nil || a.id.ID == "" {
			return nil, fmt.Errorf("archive %s: %s is damaged (%v); it must hold the archive's identity", dir, archiveIdentityFile, err)
		}
	case errors.Is(err, os.ErrNotExist) && create:
		if entries, rerr := os.ReadDir(dir); rerr == nil && len(entries) > 0 {
			return nil, fmt.Errorf("archive %s: the directory is not empty and holds no %s file; give an empty or new directory", dir, archiveIdentityFile)
		}
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("archive %s: %w", dir, err)
		}
		a.id = archiveIdentity{ID: ulid.Make().String(), Cluster: keys.Cluster, Shards: keys.shards(), Created: time.Now().UTC()}
		b, _ := json.MarshalIndent(a.id, "", "  ")
		if err := writeFileSync(filepath.Join(dir, archiveIdentityFile), append(b, '\n')); err != nil {
			return nil, fmt.Errorf("archive %s: %w", dir, err)
		}
		if err := syncDir(dir); err != nil {
			return nil, fmt.Errorf("archive %s: %w", dir, err)
		}
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("%s: %w (no %s file; 'celeroot events archive --dir %s' creates one)", dir, ErrNoArchive, archiveIdentityFile, dir)
	default:
		return nil, fmt.Errorf("archive %s: %w", dir, err)
	}
	if a.id.Cluster != keys.Cluster {
		return nil, fmt.Errorf("archive %s belongs to cluster %s, not %s", dir, a.id.Cluster, keys.Cluster)
	}
	if a.id.Shards != keys.shards() {
		return nil, fmt.Errorf("archive %s has %d shards; cluster %s has %d", dir, a.id.Shards, keys.Cluster, keys.shards())
	}
	return a, nil
}

// ID names the archive; the watermarks in Redis record it.
func (a *Archive) ID() string { return a.id.ID }

// Dir is the archive's directory.
func (a *Archive) Dir() string { return a.dir }

func (a *Archive) shardDir(n int) string { return filepath.Join(a.dir, fmt.Sprintf("shard-%03d", n)) }

type segment struct {
	path  string
	first string
}

// segments lists shard n's segment files in entry order.
func (a *Archive) segments(n int) ([]segment, error) {
	entries, err := os.ReadDir(a.shardDir(n))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("archive %s: %w", a.dir, err)
	}
	var out []segment
	for _, e := range entries {
		first, ok := strings.CutSuffix(e.Name(), ".jsonl")
		if !ok || e.IsDir() {
			continue
		}
		if _, _, ok := parseEntryID(first); !ok {
			continue
		}
		out = append(out, segment{path: filepath.Join(a.shardDir(n), e.Name()), first: first})
	}
	sort.Slice(out, func(i, j int) bool { return CompareIDs(out[i].first, out[j].first) < 0 })
	return out, nil
}

// Last returns the entry ID of the last complete line of shard n ("" if
// the shard has none). It only reads: a torn last line (a write in
// progress, or a crash in the middle of one) is ignored.
func (a *Archive) Last(n int) (string, error) { return a.last(n, false) }

// repairLast is Last for the writer: a torn last line, left by a crash in
// the middle of a write, is cut off first.
func (a *Archive) repairLast(n int) (string, error) { return a.last(n, true) }

func (a *Archive) last(n int, repair bool) (string, error) {
	segs, err := a.segments(n)
	if err != nil {
		return "", err
	}
	for i := len(segs) - 1; i >= 0; i-- {
		line, err := lastLine(segs[i].path, repair)
		if err != nil {
			return "", fmt.Errorf("archive %s: %w", a.dir, err)
		}
		if line == nil {
			continue
		}
		var l Line
		if err := json.Unmarshal(line, &l); err != nil || l.EntryID == "" {
			return "", fmt.Errorf("archive %s: the last line of %s is not an event line", a.dir, segs[i].path)
		}
		return l.EntryID, nil
	}
	return "", nil
}

// lastLine returns the last complete line of a file (nil if none); with
// repair it truncates an incomplete final line.
func lastLine(path string, repair bool) ([]byte, error) {
	flag := os.O_RDONLY
	if repair {
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	// Read backwards in growing chunks until the line before the last
	// newline is whole.
	for chunk := int64(64 << 10); ; chunk *= 4 {
		off := max(size-chunk, 0)
		buf := make([]byte, size-off)
		if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		end := bytes.LastIndexByte(buf, '\n')
		if end < 0 && off > 0 {
			continue
		}
		if repair && (end+1 < len(buf) || (end < 0 && len(buf) > 0)) {
			// A torn line after the last newline: cut it off.
			if err := f.Truncate(off + int64(end+1)); err != nil {
				return nil, err
			}
			if err := f.Sync(); err != nil {
				return nil, err
			}
		}
		if end < 0 {
			return nil, nil
		}
		start := bytes.LastIndexByte(buf[:end], '\n')
		if start < 0 && off > 0 {
			continue
		}
		return buf[start+1 : end+1], nil
	}
}

// append writes lines (each ending in a newline) to shard n, into its last
// segment or a new one named first, and fsyncs them.
func (a *Archive) append(n int, first string, lines [][]byte) error {
	if len(lines) == 0 {
		return nil
	}
	dir := a.shardDir(n)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	segs, err := a.segments(n)
	if err != nil {
		return err
	}
	path, created := "", false
	if len(segs) > 0 {
		last := segs[len(segs)-1].path
		if st, err := os.Stat(last); err == nil && st.Size() < ArchiveSegmentBytes {
			path = last
		}
	}
	if path == "" {
		path, created = filepath.Join(dir, first+".jsonl"), true
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for _, l := range lines {
		if _, err := w.Write(l); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if created {
		if err := syncDir(dir); err != nil {
			return err
		}
		return syncDir(a.dir)
	}
	return nil
}

// idBound is a stream range bound as XRANGE reads it: "-", "+", a bare
// millisecond time, or an entry ID.
type idBound struct{ ms, seq uint64 }

func parseBound(v string, upper bool) (idBound, error) {
	switch v {
	case "-", "":
		return idBound{}, nil
	case "+":
		return idBound{math.MaxUint64, math.MaxUint64}, nil
	}
	if ms, seq, ok := parseEntryID(v); ok {
		return idBound{ms, seq}, nil
	}
	ms, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return idBound{}, fmt.Errorf("range bound %q is not an entry id or a millisecond time", v)
	}
	if upper {
		return idBound{ms, math.MaxUint64}, nil
	}
	return idBound{ms, 0}, nil
}

// StartsBefore reports whether a range starting at the XRANGE bound from
// ("-", a bare millisecond time, an entry ID, "(" before one for an
// exclusive start) includes entries before id.
func StartsBefore(from, id string) bool {
	if excl, ok := strings.CutPrefix(from, "("); ok {
		return CompareIDs(excl, id) < 0 && !isSuccessor(excl, id)
	}
	lo, err := parseBound(from, false)
	if err != nil {
		return true
	}
	return lo.cmp(id) > 0
}

// isSuccessor reports whether b is the entry ID right after a.
func isSuccessor(a, b string) bool {
	am, as, ok1 := parseEntryID(a)
	bm, bs, ok2 := parseEntryID(b)
	return ok1 && ok2 && am == bm && bs == as+1
}

func (b idBound) cmp(id string) int {
	ms, seq, _ := parseEntryID(id)
	if ms != b.ms {
		return cmpUint(ms, b.ms)
	}
	return cmpUint(seq, b.seq)
}

// Entries calls fn with every archived entry of shard n with from <= id <=
// to (XRANGE bounds), in order, each decoded and with its line verbatim.
func (a *Archive) Entries(n int, from, to string, fn func(Entry) error) error {
	lo, err := parseBound(from, false)
	if err != nil {
		return err
	}
	hi, err := parseBound(to, true)
	if err != nil {
		return err
	}
	segs, err := a.segments(n)
	if err != nil {
		return err
	}
	for i, s := range segs {
		if lo.cmp(s.first) < 0 && i+1 < len(segs) && lo.cmp(segs[i+1].first) <= 0 {
			continue // wholly before from
		}
		if hi.cmp(s.first) > 0 {
			return nil // this one and the rest start after to
		}
		if err := readSegment(s.path, func(line []byte) error {
			var head struct {
				EntryID string `json:"entry_id"`
			}
			if err := json.Unmarshal(line, &head); err != nil {
				return fmt.Errorf("archive %s: %s: a line is not JSON: %w", a.dir, s.path, err)
			}
			if lo.cmp(head.EntryID) < 0 {
				return nil
			}
			if hi.cmp(head.EntryID) > 0 {
				return errStop
			}
			e, err := DecodeLine(line)
			if err != nil {
				return fmt.Errorf("archive %s: %s: %w", a.dir, s.path, err)
			}
			return fn(e)
		}); err != nil {
			if errors.Is(err, errStop) {
				return nil
			}
			return err
		}
	}
	return nil
}

var errStop = errors.New("stop")

// readSegment calls fn with every complete line of a segment.
func readSegment(path string, fn func([]byte) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	for {
		line, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			return nil // a torn last line (a write in progress) is not part of the archive
		}
		if err != nil {
			return err
		}
		if err := fn(line); err != nil {
			return err
		}
	}
}

// ArchiveOptions configures ArchiveShard.
type ArchiveOptions struct {
	// Until is the last entry to archive ("+" or "": everything there is).
	Until string
	// NewArchive lets an archive other than the one the watermark names
	// take over the shard, starting from the oldest entry still in Redis.
	NewArchive bool
	// Now is the clock; time.Now if nil.
	Now func() time.Time
}

// ArchiveResult says what ArchiveShard did.
type ArchiveResult struct {
	Shard    int    `json:"shard"`
	Written  int    `json:"written"`
	From     string `json:"from,omitempty"`
	Through  string `json:"through,omitempty"`
	Complete string `json:"archived_through,omitempty"`
}

// archiveSync bounds the bytes written between two fsyncs (and watermark
// advances) of one shard.
const archiveSync = 8 << 20

// ArchiveShard appends to the archive every entry of event store shard n
// that it does not hold yet, fsyncs, and advances the shard's watermark.
// It is idempotent and resumable: it starts after the last line in the
// files, and refuses to leave a gap (entries trimmed from Redis that the
// archive does not have).
func ArchiveShard(ctx context.Context, rdb redis.UniversalClient, keys Keys, a *Archive, n int, opts ArchiveOptions) (ArchiveResult, error) {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	res := ArchiveResult{Shard: n}
	st, err := ReadArchiveState(ctx, rdb, keys, n)
	if err != nil {
		return res, err
	}
	if st.ArchiveID != "" && st.ArchiveID != a.ID() && !opts.NewArchive {
		return res, fmt.Errorf("shard %d is archived to archive %s, not %s (%s): archive into that one, or pass --new-archive to start a new archive with the oldest event still in Redis",
			n, st.ArchiveID, a.ID(), a.dir)
	}
	last, err := a.repairLast(n)
	if err != nil {
		return res, err
	}
	stream := keys.EventShard(n)
	if st.Trimmed != "" {
		// Trimming removes a prefix: everything from the oldest entry still
		// in Redis on is there. There is a gap if the archive ends before it.
		first, err := First(ctx, rdb, stream)
		if err != nil {
			return res, err
		}
		gap := last == "" || (first != "" && CompareIDs(last, first) < 0) || (first == "" && CompareIDs(last, st.Trimmed) < 0)
		switch {
		case !gap:
		case opts.NewArchive:
			last = "" // a new archive starts with the oldest entry still in Redis
		case st.ArchiveID == "":
			return res, fmt.Errorf("shard %d was trimmed below %s without an archive (retention archive: none): an archive can only start with the oldest event still in Redis; pass --new-archive to start one", n, st.Trimmed)
		default:
			have := "nothing of it"
			if last != "" {
				have = "entries up to " + last
			}
			return res, fmt.Errorf("shard %d was trimmed below %s, and archive %s holds %s: the entries in between are only in archive %s; archive into that one, or pass --new-archive to start a new archive with the oldest event still in Redis",
				n, st.Trimmed, a.dir, have, st.ArchiveID)
		}
	}
	until := opts.Until
	if until == "" {
		until = "+"
	}
	start := "-"
	if last != "" {
		start = "(" + last
	}
	res.Complete = last
	var batch [][]byte
	var size int
	var batchFirst, batchLast string
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := a.append(n, batchFirst, batch); err != nil {
			return fmt.Errorf("archive %s: write shard %d: %w", a.dir, n, err)
		}
		if err := AdvanceWatermark(ctx, rdb, keys, n, batchLast, a.ID(), now()); err != nil {
			return err
		}
		res.Written += len(batch)
		res.Complete = batchLast
		batch, size, batchFirst = batch[:0], 0, ""
		return nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		msgs, err := rdb.XRangeN(ctx, stream, start, until, DefaultPage).Result()
		if err != nil {
			return res, fmt.Errorf("read %s from %s: %w", stream, start, err)
		}
		for _, m := range msgs {
			line := EncodeLine(entryOf(stream, m))
			if batchFirst == "" {
				batchFirst = m.ID
			}
			if res.From == "" {
				res.From = m.ID
			}
			batch, size, batchLast = append(batch, line), size+len(line), m.ID
			res.Through = m.ID
		}
		if size >= archiveSync || int64(len(msgs)) < DefaultPage {
			if err := flush(); err != nil {
				return res, err
			}
		}
		if int64(len(msgs)) < DefaultPage {
			break
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
	if res.Written == 0 && last != "" && CompareIDs(st.Archived, last) < 0 {
		// The files are ahead of the watermark (a crash after the fsync).
		if err := AdvanceWatermark(ctx, rdb, keys, n, last, a.ID(), now()); err != nil {
			return res, err
		}
	}
	return res, nil
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
