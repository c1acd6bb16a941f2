package projections

import "github.com/celeroot/celeroot/streams"

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
	for _, f := range p.Fields {
		r[f.Name] = f.Value
	}
	return true
}

// Newer reports whether stream entry ID a is after b, comparing the
// millisecond and sequence parts as numbers. An unparsable ID is never newer.
func Newer(a, b string) bool {
	return streams.CompareIDs(a, "") > 0 && streams.CompareIDs(a, b) > 0
}
