package schema

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// Bounds on one file. Inputs beyond them are refused with an error, never
// truncated.
const (
	// MaxFileSize is the largest file (or standard input) Load reads.
	MaxFileSize = 4 << 20
	// maxValues bounds the values of one document after aliases are
	// expanded, so that an "alias bomb" cannot exhaust memory.
	maxValues = 1 << 20
	// maxNesting bounds the nesting of flow collections ([[[...]]]) and of
	// sequences opened on one line (- - - x), which the YAML parser handles
	// in time quadratic in the depth.
	maxNesting = 64
	// maxDepth bounds the nesting of a document's values.
	maxDepth = 512
)

// rawDoc is one YAML document as plain JSON values (map[string]any,
// []any, string, json.Number, bool, nil), with the position of each
// value by JSON pointer.
type rawDoc struct {
	file  string
	value any
	pos   map[string]nodePos
}

// nodePos is where a value, and the key that names it, are written.
type nodePos struct {
	key    position // zero for the root and sequence items
	value  position
	parent bool   // the value is a mapping or a sequence
	text   string // a number as written ("0644"), for hints
}

// at returns the position to report for an error at ptr. An error about a
// key (an unknown field) points at the key. Otherwise it points at the
// value, except that a mapping or sequence is reported at its key, where it
// visibly starts. A pointer without a position (a missing field) falls back
// to the closest ancestor that has one.
func (d *rawDoc) at(ptr string, keyErr bool) position {
	p, ok := d.pos[ptr]
	for !ok && ptr != "" {
		ptr, _ = pointerParent(ptr)
		p, ok = d.pos[ptr]
		keyErr = false
	}
	if !ok {
		return position{}
	}
	if p.key.line > 0 && (keyErr || p.parent) {
		return p.key
	}
	return p.value
}

// errorAt builds an Error at ptr.
func (d *rawDoc) errorAt(ptr string, keyErr bool, hint, format string, args ...any) *Error {
	p := d.at(ptr, keyErr)
	return &Error{File: d.file, Line: p.line, Col: p.col, Pointer: ptr, Msg: fmt.Sprintf(format, args...), Hint: hint}
}

// lookup returns the value at ptr.
func (d *rawDoc) lookup(ptr string) (any, bool) {
	v := d.value
	if ptr == "" {
		return v, true
	}
	for _, tok := range strings.Split(ptr[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch c := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = c[tok]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(c) {
				return nil, false
			}
			v = c[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// decodeYAML parses every document of a file. A file that is not text, or
// not YAML, yields one error and no documents; a document whose values
// cannot be represented in JSON yields errors and is left out.
func decodeYAML(file string, src []byte) ([]*rawDoc, []*Error) {
	fileErr := func(p position, hint, format string, args ...any) []*Error {
		return []*Error{{File: file, Line: p.line, Col: p.col, Msg: fmt.Sprintf(format, args...), Hint: hint}}
	}
	if len(src) >= 2 && (src[0] == 0xFE && src[1] == 0xFF || src[0] == 0xFF && src[1] == 0xFE) {
		return nil, fileErr(position{}, "save the file as UTF-8", "the file is UTF-16 encoded")
	}
	src = []byte(strings.TrimPrefix(string(src), "\uFEFF"))
	if p, r, ok := checkText(src); !ok {
		if r == utf8.RuneError {
			return nil, fileErr(p, "celeroot reads YAML or JSON text in UTF-8; is this a binary file?", "not valid UTF-8")
		}
		return nil, fileErr(p, "celeroot reads YAML or JSON text; is this a binary file?", "control character %U in the text", r)
	}
	tokens := lexer.Tokenize(string(src))
	if tk := deepToken(tokens); tk != nil {
		return nil, fileErr(tokenPos(tk), "", "collections nested more than %d deep", maxNesting)
	}
	f, err := parseTokens(tokens)
	if err != nil {
		return nil, []*Error{syntaxError(file, err)}
	}
	var docs []*rawDoc
	var errs []*Error
	for _, d := range f.Docs {
		body := d.Body
		if body == nil {
			continue
		}
		switch body.Type() {
		case ast.DirectiveType, ast.CommentType:
			continue
		}
		c := &converter{doc: &rawDoc{file: file, pos: map[string]nodePos{}}, anchors: map[string]ast.Node{}}
		c.doc.value = c.convert(body, "", position{})
		if len(c.errs) > 0 {
			errs = append(errs, c.errs...)
			continue
		}
		docs = append(docs, c.doc)
	}
	return docs, errs
}

// parseTokens parses the tokens, turning a panic in the parser into an
// error: malformed input must never crash the caller.
func parseTokens(tokens token.Tokens) (f *ast.File, err error) {
	defer func() {
		if r := recover(); r != nil {
			f, err = nil, fmt.Errorf("the YAML parser failed: %v", r)
		}
	}()
	return parser.Parse(tokens, 0)
}

// checkText reports the position of the first byte that is not valid
// UTF-8, or of the first character YAML does not allow in a file (C0 and
// C1 control characters other than tab, line feed, carriage return and
// next line; DEL; U+FFFE and U+FFFF).
func checkText(src []byte) (position, rune, bool) {
	line, col := 1, 1
	for i := 0; i < len(src); {
		r, size := utf8.DecodeRune(src[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			return position{line, col}, utf8.RuneError, false
		case r == '\n':
			line, col = line+1, 0
		case r == '\t' || r == '\r' || r == 0x85:
		case r < 0x20 || r == 0x7F || (r >= 0x80 && r <= 0x9F) || r == 0xFFFE || r == 0xFFFF:
			return position{line, col}, r, false
		}
		i += size
		col++
	}
	return position{}, 0, true
}

// deepToken returns a token nested deeper than maxNesting, or nil.
func deepToken(tokens token.Tokens) *token.Token {
	flow, line, entries := 0, 0, 0
	for _, tk := range tokens {
		switch tk.Type {
		case token.SequenceStartType, token.MappingStartType:
			flow++
			if flow > maxNesting {
				return tk
			}
		case token.SequenceEndType, token.MappingEndType:
			flow = max(flow-1, 0)
		case token.SequenceEntryType:
			if tk.Position == nil {
				continue
			}
			if tk.Position.Line != line {
				line, entries = tk.Position.Line, 0
			}
			entries++
			if entries > maxNesting {
				return tk
			}
		}
	}
	return nil
}

func tokenPos(tk *token.Token) position {
	if tk == nil || tk.Position == nil {
		return position{}
	}
	return position{tk.Position.Line, tk.Position.Column}
}

// syntaxError turns a parser error into an Error at the token it names.
func syntaxError(file string, err error) *Error {
	e := &Error{File: file, Msg: "YAML syntax error: " + err.Error()}
	type tokenError interface {
		GetToken() *token.Token
		GetMessage() string
	}
	te, ok := err.(tokenError)
	if !ok {
		return e
	}
	p := tokenPos(te.GetToken())
	e.Line, e.Col = p.line, p.col
	msg := te.GetMessage()
	switch {
	case strings.Contains(msg, "'\t'"):
		e.Msg = "tab character in indentation"
		e.Hint = "YAML indents with spaces only; replace the tab with spaces"
	case strings.HasPrefix(msg, "mapping key") && strings.Contains(msg, "already defined"):
		e.Msg = "duplicate key: " + strings.TrimPrefix(msg, "mapping key ")
		e.Hint = "a key may appear once in a mapping; remove or rename one"
	default:
		e.Msg = "YAML syntax error: " + msg
		e.Hint = "check the indentation and quoting at this point and on the line above"
	}
	return e
}

// converter turns one document's AST into plain values.
type converter struct {
	doc     *rawDoc
	anchors map[string]ast.Node
	values  int
	depth   int
	errs    []*Error
	full    bool // maxValues was reached
}

func nodePosition(n ast.Node) position {
	switch n := n.(type) {
	case *ast.MappingNode:
		if !n.IsFlowStyle && len(n.Values) > 0 {
			return tokenPos(n.Values[0].Key.GetToken())
		}
		return tokenPos(n.Start)
	case *ast.MappingValueNode:
		return tokenPos(n.Key.GetToken())
	case *ast.SequenceNode:
		return tokenPos(n.Start)
	case *ast.AnchorNode:
		return tokenPos(n.Start)
	case *ast.TagNode:
		return tokenPos(n.Start)
	case nil:
		return position{}
	}
	return tokenPos(n.GetToken())
}

func (c *converter) fail(n ast.Node, ptr, hint, format string, args ...any) any {
	p := nodePosition(n)
	c.errs = append(c.errs, &Error{File: c.doc.file, Line: p.line, Col: p.col, Pointer: ptr, Msg: fmt.Sprintf(format, args...), Hint: hint})
	return nil
}

// convert returns the value of n, recording its position under ptr. key
// is the position of the key that names it, if any.
func (c *converter) convert(n ast.Node, ptr string, key position) any {
	if c.full {
		return nil
	}
	c.values++
	if c.values > maxValues {
		c.full = true
		return c.fail(n, ptr, "split the document, or use fewer aliases", "the document has more than %d values (aliases expanded)", maxValues)
	}
	c.depth++
	defer func() { c.depth-- }()
	if c.depth > maxDepth {
		c.full = true
		return c.fail(n, ptr, "", "values nested more than %d deep", maxDepth)
	}
	_, isMap := n.(*ast.MappingNode)
	_, isSeq := n.(*ast.SequenceNode)
	_, isPair := n.(*ast.MappingValueNode)
	c.doc.pos[ptr] = nodePos{key: key, value: nodePosition(n), parent: isMap || isSeq || isPair}

	switch n := n.(type) {
	case nil, *ast.NullNode:
		return nil
	case *ast.BoolNode:
		return n.Value
	case *ast.IntegerNode:
		c.setText(ptr, n)
		switch v := n.Value.(type) {
		case int64:
			return json.Number(strconv.FormatInt(v, 10))
		case uint64:
			return json.Number(strconv.FormatUint(v, 10))
		}
		return c.fail(n, ptr, "", "cannot read the integer %s", n.GetToken().Value)
	case *ast.FloatNode:
		c.setText(ptr, n)
		if math.IsInf(n.Value, 0) || math.IsNaN(n.Value) {
			return c.fail(n, ptr, "", "the number %s is out of range", n.GetToken().Value)
		}
		return json.Number(strconv.FormatFloat(n.Value, 'g', -1, 64))
	case *ast.InfinityNode, *ast.NanNode:
		return c.fail(n, ptr, `quote it if you mean a string: "`+n.GetToken().Value+`"`, "%s is not a number JSON can represent", n.GetToken().Value)
	case *ast.StringNode:
		return n.Value
	case *ast.LiteralNode:
		return literal(n)
	case *ast.MappingNode:
		return c.mapping(n.Values, ptr)
	case *ast.MappingValueNode:
		return c.mapping([]*ast.MappingValueNode{n}, ptr)
	case *ast.SequenceNode:
		out := make([]any, 0, len(n.Values))
		for i, v := range n.Values {
			out = append(out, c.convert(v, ptr+"/"+strconv.Itoa(i), position{}))
		}
		return out
	case *ast.AnchorNode:
		v := c.convert(n.Value, ptr, key)
		p := c.doc.pos[ptr]
		p.key, p.value = key, nodePosition(n)
		c.doc.pos[ptr] = p
		c.anchor(n)
		return v
	case *ast.AliasNode:
		name := ""
		if n.Value != nil {
			name = n.Value.GetToken().Value
		}
		target, ok := c.anchors[name]
		if !ok {
			return c.fail(n, ptr, "define the anchor (&"+name+") before this alias", "unknown alias *%s", name)
		}
		v := c.convert(target, ptr, key)
		p := c.doc.pos[ptr]
		p.key, p.value = key, tokenPos(n.Start)
		c.doc.pos[ptr] = p
		return v
	case *ast.TagNode:
		return c.tagged(n, ptr, key)
	}
	return c.fail(n, ptr, "", "unsupported YAML construct (%s)", n.Type())
}

// anchor records an anchor's value for later aliases. An anchored alias
// records what the alias names, so that no anchor ever names an alias.
func (c *converter) anchor(n *ast.AnchorNode) {
	if n.Name == nil || n.Value == nil {
		return
	}
	target := n.Value
	if a, ok := target.(*ast.AliasNode); ok {
		if a.Value == nil {
			return
		}
		if target, ok = c.anchors[a.Value.GetToken().Value]; !ok {
			return
		}
	}
	c.anchors[n.Name.GetToken().Value] = target
}

func (c *converter) setText(ptr string, n ast.Node) {
	if tk := n.GetToken(); tk != nil {
		p := c.doc.pos[ptr]
		p.text = tk.Value
		c.doc.pos[ptr] = p
	}
}

// tagged converts an explicitly tagged value. Only the core tags are
// supported; !!str turns a scalar into the string written.
func (c *converter) tagged(n *ast.TagNode, ptr string, key position) any {
	tag := n.Start.Value
	tag = strings.TrimPrefix(tag, "tag:yaml.org,2002:")
	tag = strings.TrimPrefix(tag, "!!")
	switch tag {
	case "str":
		c.doc.pos[ptr] = nodePos{key: key, value: nodePosition(n)}
		switch v := n.Value.(type) {
		case nil, *ast.NullNode:
			return ""
		case *ast.StringNode:
			return v.Value
		case *ast.LiteralNode:
			return literal(v)
		case ast.ScalarNode:
			return v.GetToken().Value
		}
		return c.fail(n, ptr, "", "!!str needs a scalar value")
	case "int", "float", "bool", "null", "map", "seq":
		before := len(c.errs)
		v := c.convert(n.Value, ptr, key)
		if len(c.errs) > before {
			return nil
		}
		ok := false
		switch v := v.(type) {
		case json.Number:
			ok = tag == "float" || tag == "int" && !strings.ContainsAny(v.String(), ".eE")
		case bool:
			ok = tag == "bool"
		case nil:
			ok = tag == "null"
		case map[string]any:
			ok = tag == "map"
		case []any:
			ok = tag == "seq"
		}
		if !ok {
			return c.fail(n, ptr, "", "the value is not a valid !!%s", tag)
		}
		return v
	}
	return c.fail(n, ptr, "remove the tag; celeroot documents are plain YAML", "unsupported tag %s", n.Start.Value)
}

// mapping converts the pairs of a mapping, then the pairs merged into it
// with "<<" (explicit keys win, then earlier merges).
func (c *converter) mapping(pairs []*ast.MappingValueNode, ptr string) any {
	out := map[string]any{}
	var merges []ast.Node
	for _, p := range pairs {
		if p.Key == nil {
			continue
		}
		if p.Key.IsMergeKey() {
			merges = append(merges, p.Value)
			continue
		}
		k, ok := c.key(p.Key, ptr)
		if !ok {
			continue
		}
		kp := tokenPos(p.Key.GetToken())
		cp := pointerJoin(ptr, k)
		if _, dup := out[k]; dup {
			c.fail(p.Key, cp, "a key may appear once in a mapping; remove or rename one", "duplicate key %q", k)
			continue
		}
		out[k] = c.convert(p.Value, cp, kp)
	}
	for _, m := range merges {
		for _, p := range c.mergePairs(m, ptr, 0) {
			k, ok := c.key(p.Key, ptr)
			if !ok {
				continue
			}
			if _, exists := out[k]; exists {
				continue
			}
			out[k] = c.convert(p.Value, pointerJoin(ptr, k), tokenPos(p.Key.GetToken()))
		}
	}
	return out
}

// mergePairs returns the pairs a "<<" value brings in: a mapping, an alias
// of one, or a sequence of those.
func (c *converter) mergePairs(n ast.Node, ptr string, depth int) []*ast.MappingValueNode {
	const hint = "the value of << must be a mapping, an alias of one, or a list of those"
	switch v := n.(type) {
	case *ast.AliasNode:
		name := ""
		if v.Value != nil {
			name = v.Value.GetToken().Value
		}
		target, ok := c.anchors[name]
		if !ok {
			c.fail(n, ptr, "define the anchor (&"+name+") before this alias", "unknown alias *%s", name)
			return nil
		}
		return c.mergePairs(target, ptr, depth)
	case *ast.AnchorNode:
		c.anchor(v)
		return c.mergePairs(v.Value, ptr, depth)
	case *ast.MappingNode:
		return v.Values
	case *ast.MappingValueNode:
		return []*ast.MappingValueNode{v}
	case *ast.SequenceNode:
		if depth > 0 {
			break
		}
		var out []*ast.MappingValueNode
		for _, e := range v.Values {
			out = append(out, c.mergePairs(e, ptr, depth+1)...)
		}
		return out
	}
	c.fail(n, ptr, hint, "cannot merge this value")
	return nil
}

// key returns a mapping key as a string. Scalar keys are used as written
// (the key 1 is "1"); null, alias and collection keys are errors.
func (c *converter) key(k ast.MapKeyNode, ptr string) (string, bool) {
	var n ast.Node = k
	for {
		switch v := n.(type) {
		case *ast.MappingKeyNode:
			n = v.Value
			continue
		case *ast.AnchorNode:
			n = v.Value
			continue
		case *ast.TagNode:
			n = v.Value
			continue
		}
		break
	}
	switch v := n.(type) {
	case *ast.StringNode:
		return v.Value, true
	case *ast.LiteralNode:
		return literal(v), true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		return v.GetToken().Value, true
	case *ast.NullNode:
		c.fail(k, ptr, "quote it if you mean the string: \"null\"", "a key may not be null")
		return "", false
	}
	c.fail(k, ptr, "", "a key must be a string")
	return "", false
}

// literal returns the content of a block scalar (| or >).
func literal(n *ast.LiteralNode) string {
	if n.Value == nil {
		return ""
	}
	return n.Value.Value
}
