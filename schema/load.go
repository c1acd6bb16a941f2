package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Set is a configuration: at most one Cluster and any number of Tasks, as
// read from one or more files. Load and LoadPath fill in defaults; the
// documents are not validated until Validator.Validate.
type Set struct {
	// Cluster is nil if no file held a Cluster document.
	Cluster *Cluster
	// Tasks in the order they were read.
	Tasks []*Task

	files []string             // in load order, for sorting errors
	raw   map[Document]*rawDoc // the parsed document behind each typed one
}

// Load reads the documents of one source: YAML documents separated by
// "---" (JSON is YAML too). name is used in errors. It returns the
// documents it could read and an error for every problem: the source is
// over MaxFileSize, not UTF-8 text, not YAML, holds no documents, or holds
// a document of an unknown kind or apiVersion, or a second Cluster.
func Load(name string, r io.Reader) (*Set, []*Error) {
	s := newSet()
	data, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		return s, []*Error{{File: name, Msg: "cannot read: " + err.Error()}}
	}
	if len(data) > MaxFileSize {
		return s, []*Error{tooLarge(name, -1)}
	}
	errs := s.add(name, data)
	return s, errs
}

// LoadPath loads a file, every *.yaml, *.yml and *.json file of a directory
// (sorted by name, not recursive), or standard input when path is "-"
// (named "<stdin>" in errors).
func LoadPath(path string, stdin io.Reader) (*Set, []*Error) {
	if path == "-" {
		if stdin == nil {
			return newSet(), []*Error{{File: "<stdin>", Msg: "no standard input to read"}}
		}
		return Load("<stdin>", stdin)
	}
	s := newSet()
	fi, err := os.Stat(path)
	if err != nil {
		return s, []*Error{{File: path, Msg: "cannot read: " + pathError(err)}}
	}
	if !fi.IsDir() {
		return s, s.loadFile(path, fi)
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return s, []*Error{{File: path, Msg: "cannot read the directory: " + pathError(err)}}
	}
	var errs []*Error
	n := 0
	for _, e := range entries {
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if e.IsDir() || ext != ".yaml" && ext != ".yml" && ext != ".json" {
			continue
		}
		n++
		p := filepath.Join(path, e.Name())
		fi, err := os.Stat(p)
		if err != nil {
			errs = append(errs, &Error{File: p, Msg: "cannot read: " + pathError(err)})
			continue
		}
		if fi.IsDir() {
			continue
		}
		errs = append(errs, s.loadFile(p, fi)...)
	}
	if n == 0 {
		errs = append(errs, &Error{File: path, Msg: "no .yaml, .yml or .json files in the directory"})
	}
	return s, errs
}

// Merge adds the documents of o to s. It is an error if both hold a
// Cluster; s keeps its own.
func (s *Set) Merge(o *Set) []*Error {
	s.init()
	var errs []*Error
	for _, f := range o.files {
		s.addFile(f)
	}
	for d, raw := range o.raw {
		s.raw[d] = raw
	}
	if o.Cluster != nil {
		if s.Cluster != nil {
			errs = append(errs, s.secondCluster(o.Cluster))
		} else {
			s.Cluster = o.Cluster
		}
	}
	s.Tasks = append(s.Tasks, o.Tasks...)
	return errs
}

func newSet() *Set {
	s := &Set{}
	s.init()
	return s
}

func (s *Set) init() {
	if s.raw == nil {
		s.raw = map[Document]*rawDoc{}
	}
}

func (s *Set) addFile(name string) {
	for _, f := range s.files {
		if f == name {
			return
		}
	}
	s.files = append(s.files, name)
}

func (s *Set) loadFile(path string, fi fs.FileInfo) []*Error {
	if fi.Size() > MaxFileSize {
		return []*Error{tooLarge(path, fi.Size())}
	}
	f, err := os.Open(path)
	if err != nil {
		return []*Error{{File: path, Msg: "cannot read: " + pathError(err)}}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return []*Error{{File: path, Msg: "cannot read: " + pathError(err)}}
	}
	if len(data) > MaxFileSize {
		return []*Error{tooLarge(path, -1)}
	}
	return s.add(path, data)
}

func tooLarge(name string, size int64) *Error {
	msg := fmt.Sprintf("the input is larger than %d bytes (4 MiB)", MaxFileSize)
	if size >= 0 {
		msg = fmt.Sprintf("the file is %d bytes, larger than %d (4 MiB)", size, MaxFileSize)
	}
	return &Error{File: name, Msg: msg, Hint: "split it into several files in one directory"}
}

func pathError(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// add parses the documents of one file into s.
func (s *Set) add(name string, data []byte) []*Error {
	s.addFile(name)
	docs, errs := decodeYAML(name, data)
	if len(docs) == 0 && len(errs) == 0 {
		return []*Error{{File: name, Msg: "no documents", Hint: "the file is empty or holds only comments; add a kind: Cluster or kind: Task document"}}
	}
	for _, d := range docs {
		if err := s.addDoc(d); err != nil {
			errs = append(errs, err)
		}
	}
	sort.SliceStable(errs, func(i, j int) bool {
		if errs[i].Line != errs[j].Line {
			return errs[i].Line < errs[j].Line
		}
		return errs[i].Col < errs[j].Col
	})
	return errs
}

var kinds = []string{KindCluster, KindTask}

// addDoc decodes one document by its kind and adds it to s.
func (s *Set) addDoc(d *rawDoc) *Error {
	m, ok := d.value.(map[string]any)
	if !ok {
		return d.errorAt("", false, "a document is a mapping with apiVersion, kind, metadata and spec",
			"the document is %s, not a mapping", describe(d.value))
	}
	kv, ok := m["kind"]
	if !ok {
		return d.errorAt("", false, "add kind: Cluster or kind: Task", "missing kind")
	}
	kind, ok := kv.(string)
	if !ok {
		return d.errorAt("/kind", false, "use kind: Cluster or kind: Task", "kind must be a string, found %s", describe(kv))
	}
	if kind != KindCluster && kind != KindTask {
		hint := "use kind: Cluster or kind: Task"
		if s := suggest(kind, kinds); s != "" {
			hint = fmt.Sprintf("did you mean %s?", s)
		}
		return d.errorAt("/kind", false, hint, "unknown kind %q", kind)
	}
	if v, ok := m["apiVersion"].(string); ok && v != APIVersion {
		return d.errorAt("/apiVersion", false, "use apiVersion: "+APIVersion, "unsupported apiVersion %q", v)
	}
	var doc Document
	switch kind {
	case KindCluster:
		c := &Cluster{}
		decodeLenient(d.value, c)
		c.File = d.file
		c.setDefaults()
		if s.Cluster != nil {
			s.raw[c] = d
			return s.secondCluster(c)
		}
		s.Cluster = c
		doc = c
	case KindTask:
		t := &Task{}
		decodeLenient(d.value, t)
		t.File = d.file
		t.setDefaults()
		s.Tasks = append(s.Tasks, t)
		doc = t
	}
	s.raw[doc] = d
	return nil
}

func (s *Set) secondCluster(c *Cluster) *Error {
	first := s.rawOf(s.Cluster)
	where := s.Cluster.File
	if p := first.at("/kind", false); p.line > 0 {
		where = fmt.Sprintf("%s:%d:%d", where, p.line, p.col)
	}
	return s.rawOf(c).errorAt("/kind", false, "validate each cluster on its own",
		"a second Cluster document; a configuration has one (the first is at %s)", where)
}

// rawOf returns the parsed document behind doc. A document built in Go
// (not loaded) gets one made from its JSON form, without positions; s is
// not changed, so that several goroutines may validate one Set.
func (s *Set) rawOf(doc Document) *rawDoc {
	if d, ok := s.raw[doc]; ok {
		return d
	}
	file := ""
	switch doc := doc.(type) {
	case *Cluster:
		file = doc.File
	case *Task:
		file = doc.File
	}
	d := &rawDoc{file: file, pos: map[string]nodePos{}}
	if b, err := json.Marshal(doc); err == nil {
		d.value, _ = decodeJSON(b)
	}
	return d
}

// decodeLenient fills v from the plain value. Values of the wrong type are
// skipped (encoding/json's documented behaviour): the validator reports
// them from the plain value, with their positions.
func decodeLenient(value any, v any) {
	b, err := json.Marshal(value)
	if err != nil {
		return
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	_ = dec.Decode(v)
}

// decodeJSON decodes JSON keeping numbers exact.
func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	return v, err
}

// describe names a value's type for messages, with the value if short.
func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return fmt.Sprintf("a boolean (%t)", v)
	case json.Number:
		if strings.ContainsAny(v.String(), ".eE") {
			return "a number (" + v.String() + ")"
		}
		return "an integer (" + v.String() + ")"
	case string:
		return fmt.Sprintf("a string (%q)", truncate(v, 40))
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprintf("%T", v)
}

// truncate shortens s to at most n characters.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-3]) + "..."
}
