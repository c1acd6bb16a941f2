package projections

import (
	"strconv"
	"strings"
)

// Record is one entity's projection: its fields, including the
// VersionPrefix fields that hold each guard's order.
type Record map[string]string

// Records is an in-memory projection: every record by reference.
type Records map[Ref]Record

// Apply folds one patch into recs, keeping the newer of the guard's
// current order and the patch's. It reports whether the patch was applied.
func (recs Records) Apply(p Patch) bool {
	r := recs[p.Ref]
	if r == nil {
		r = Record{}
		recs[p.Ref] = r
	}
	vf := VersionPrefix + p.Guard
	if cur, ok := r[vf]; ok && !Newer(p.Order, cur) {
		return false
	}
	r[vf] = p.Order
	for k, v := range p.Fields {
		r[k] = v
	}
	return true
}

// Newer reports whether stream entry ID a is after b, comparing the
// millisecond and sequence parts as numbers. An unparsable ID is never newer.
func Newer(a, b string) bool {
	am, as, ok := parseID(a)
	if !ok {
		return false
	}
	bm, bs, ok := parseID(b)
	if !ok {
		return true
	}
	return am > bm || (am == bm && as > bs)
}

func parseID(id string) (ms, seq uint64, ok bool) {
	m, s, found := strings.Cut(id, "-")
	if !found {
		return 0, 0, false
	}
	var err1, err2 error
	ms, err1 = strconv.ParseUint(m, 10, 64)
	seq, err2 = strconv.ParseUint(s, 10, 64)
	return ms, seq, err1 == nil && err2 == nil
}
