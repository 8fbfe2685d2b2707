package manifest

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// This file reads the DSL that moon.mod and moon.work are written in
// (moon's crates/moonutil/src/moon_pkg/ at baa7814; docs/protocol.md §9
// has the grammar with its sources):
//
//	file      = { statement [";"] } .
//	statement = ident "=" value
//	          | ident "(" [ label ":" value { "," label ":" value } [","] ] ")"
//	          | "import" [string] "{" [ item { "," item } [","] ] "}" [ "for" string ] .
//	label     = ident | string .
//	item      = string [ ["as"] "@" name ] .
//	value     = string | int | "true" | "false"
//	          | "[" [ value { "," value } [","] ] "]"
//	          | "{" [ string ":" value { "," string ":" value } [","] ] "}" .
//
// Newlines are not significant; comments run from "//" to the end of the
// line; strings are double-quoted with JSON's escapes.

// Pos is a place in a file: line and column, both from 1, the column
// counted in bytes as moon counts it.
type Pos struct{ Line, Col int }

func (p Pos) String() string { return fmt.Sprintf("%d:%d", p.Line, p.Col) }

// SyntaxError is a manifest that cannot be read, with where.
type SyntaxError struct {
	File string // "moon.mod", "moon.work"
	Pos  Pos
	Msg  string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("%s:%s: %s", e.File, e.Pos, e.Msg) }

// failIn makes the errors of a file's meaning: a SyntaxError at a place.
func failIn(file string) func(p Pos, format string, args ...any) error {
	return func(p Pos, format string, args ...any) error {
		return &SyntaxError{File: file, Pos: p, Msg: fmt.Sprintf(format, args...)}
	}
}

// Is makes a SyntaxError match ErrInvalid.
func (e *SyntaxError) Is(target error) bool { return target == ErrInvalid }

// maxDSLSize bounds what the reader takes: a manifest is a few hundred
// bytes (an index line built from one is at most 31 KiB), and the tokens
// and values held while reading grow with it.
const (
	maxDSLSize  = 64 << 10
	maxDSLDepth = 64
)

type tokenKind int

const (
	tokEOF tokenKind = iota
	tokPunct
	tokString
	tokInt
	tokIdent
	tokKeyword
	tokPackage // @name, the alias of an import item
)

type token struct {
	kind tokenKind
	text string // punctuation, identifier, keyword, unescaped string, package name
	num  int64
	pos  Pos
}

func (t token) describe() string {
	switch t.kind {
	case tokEOF:
		return "end of file"
	case tokString:
		return strconv.Quote(t.text)
	case tokInt:
		return strconv.FormatInt(t.num, 10)
	case tokPackage:
		return "@" + t.text
	}
	return "`" + t.text + "`"
}

var dslKeywords = map[string]bool{"import": true, "as": true, "for": true, "true": true, "false": true}

// lexer turns the whole input into tokens first: as in moon, a lexing
// error anywhere wins over a parse error.
type lexer struct {
	file      string
	src       string
	off       int
	line      int
	lineStart int
}

func (l *lexer) pos() Pos { return Pos{Line: l.line, Col: l.off - l.lineStart + 1} }

func (l *lexer) errorf(p Pos, format string, args ...any) error {
	return &SyntaxError{File: l.file, Pos: p, Msg: fmt.Sprintf(format, args...)}
}

func (l *lexer) newline(width int) {
	l.off += width
	l.line++
	l.lineStart = l.off
}

func tokenize(file string, src []byte) ([]token, error) {
	if len(src) > maxDSLSize {
		return nil, &SyntaxError{File: file, Pos: Pos{1, 1}, Msg: fmt.Sprintf("larger than %d KiB", maxDSLSize>>10)}
	}
	l := &lexer{file: file, src: string(src), line: 1}
	var out []token
	for {
		t, err := l.next()
		if err != nil {
			return nil, err
		}
		out = append(out, t)
		if t.kind == tokEOF {
			return out, nil
		}
	}
}

func (l *lexer) next() (token, error) {
	for l.off < len(l.src) {
		c := l.src[l.off]
		switch {
		case c == ' ' || c == '\t' || c == '\f':
			l.off++
		case c == '\n':
			l.newline(1)
		case c == '\r':
			if !strings.HasPrefix(l.src[l.off:], "\r\n") {
				return token{}, l.errorf(l.pos(), "a carriage return not followed by a line feed")
			}
			l.newline(2)
		case strings.HasPrefix(l.src[l.off:], "//"):
			end := strings.IndexAny(l.src[l.off:], "\r\n")
			if end < 0 {
				end = len(l.src) - l.off
			}
			l.off += end
		default:
			return l.token()
		}
	}
	return token{kind: tokEOF, pos: l.pos()}, nil
}

func (l *lexer) token() (token, error) {
	p := l.pos()
	c := l.src[l.off]
	switch {
	case strings.IndexByte("[],:{}=();", c) >= 0:
		l.off++
		return token{kind: tokPunct, text: string(c), pos: p}, nil
	case c == '"':
		s, err := l.str()
		return token{kind: tokString, text: s, pos: p}, err
	case c == '-' || isDigit(c):
		start := l.off
		l.off++
		for l.off < len(l.src) && isDigit(l.src[l.off]) {
			l.off++
		}
		text := l.src[start:l.off]
		if text == "-" {
			return token{}, l.errorf(p, "`-` is not followed by a digit")
		}
		n, err := strconv.ParseInt(text, 10, 32)
		if err != nil {
			return token{}, l.errorf(p, "integer %s is out of range (32 bits)", text)
		}
		return token{kind: tokInt, num: n, pos: p}, nil
	case isIdentStart(c):
		start := l.off
		for l.off < len(l.src) && isIdentPart(l.src[l.off]) {
			l.off++
		}
		text := l.src[start:l.off]
		if dslKeywords[text] {
			return token{kind: tokKeyword, text: text, pos: p}, nil
		}
		return token{kind: tokIdent, text: text, pos: p}, nil
	case c == '@':
		l.off++
		start := l.off
		for {
			if l.off >= len(l.src) || !isIdentStart(l.src[l.off]) {
				return token{}, l.errorf(p, "`@` is not followed by a package name")
			}
			for l.off < len(l.src) && (isIdentPart(l.src[l.off]) || l.src[l.off] == '-') {
				l.off++
			}
			if l.off+1 < len(l.src) && l.src[l.off] == '/' && isIdentStart(l.src[l.off+1]) {
				l.off++
				continue
			}
			return token{kind: tokPackage, text: l.src[start:l.off], pos: p}, nil
		}
	}
	r, _ := utf8.DecodeRuneInString(l.src[l.off:])
	return token{}, l.errorf(p, "unexpected character %q", r)
}

// str reads a string literal at l.off: JSON's escapes, raw newlines kept
// (and counted, so later positions stay right).
func (l *lexer) str() (string, error) {
	open := l.pos()
	l.off++ // the opening quote
	var b strings.Builder
	for {
		if l.off >= len(l.src) {
			return "", l.errorf(open, "string is not closed")
		}
		c := l.src[l.off]
		switch c {
		case '"':
			l.off++
			return b.String(), nil
		case '\n':
			b.WriteByte(c)
			l.newline(1)
			continue
		case '\\':
		default:
			b.WriteByte(c)
			l.off++
			continue
		}
		esc := l.pos()
		if l.off+1 >= len(l.src) {
			return "", l.errorf(open, "string is not closed")
		}
		e := l.src[l.off+1]
		l.off += 2
		switch e {
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case 'f':
			b.WriteByte('\f')
		case 'b':
			b.WriteByte('\b')
		case '\\', '"', '/':
			b.WriteByte(e)
		case 'u':
			if l.off+4 > len(l.src) {
				return "", l.errorf(esc, "`\\u` needs four hex digits")
			}
			n, err := strconv.ParseUint(l.src[l.off:l.off+4], 16, 32)
			if err != nil || (n >= 0xD800 && n <= 0xDFFF) {
				return "", l.errorf(esc, "`\\u%s` is not a Unicode scalar value", l.src[l.off:l.off+4])
			}
			b.WriteRune(rune(n))
			l.off += 4
		default:
			r, _ := utf8.DecodeRuneInString(l.src[l.off-1:])
			return "", l.errorf(esc, "unknown escape `\\%c` in a string", r)
		}
	}
}

func isDigit(c byte) bool      { return c >= '0' && c <= '9' }
func isIdentStart(c byte) bool { return c == '_' || (c|0x20 >= 'a' && c|0x20 <= 'z') }
func isIdentPart(c byte) bool  { return isIdentStart(c) || isDigit(c) }

// A statement of a DSL file: its key (the identifier; "import",
// "test-import" or "wbtest-import" for imports) and its value, as JSON
// would hold it: string, int64, bool, []any or *object.
type statement struct {
	key   string
	value any
	pos   Pos
}

// object is a map whose keys keep their order and their places; a key
// given twice keeps its first place and its last value, as in moon.
type object struct {
	keys []string
	vals map[string]any
	pos  map[string]Pos
}

func newObject() *object { return &object{vals: map[string]any{}, pos: map[string]Pos{}} }

func (o *object) set(k string, v any, p Pos) {
	if _, ok := o.vals[k]; !ok {
		o.keys = append(o.keys, k)
		o.pos[k] = p
	}
	o.vals[k] = v
}

// remove takes key out.
func (o *object) remove(k string) {
	if _, ok := o.vals[k]; !ok {
		return
	}
	delete(o.vals, k)
	delete(o.pos, k)
	o.keys = slices.DeleteFunc(o.keys, func(s string) bool { return s == k })
}

type parser struct {
	file string
	toks []token
	i    int
}

// parseDSL reads a whole moon.mod or moon.work into its statements.
func parseDSL(file string, src []byte) ([]statement, error) {
	toks, err := tokenize(file, src)
	if err != nil {
		return nil, err
	}
	p := &parser{file: file, toks: toks}
	var out []statement
	for p.peek().kind != tokEOF {
		st, err := p.statement()
		if err != nil {
			return nil, err
		}
		out = append(out, st)
		p.accept(";")
	}
	return out, nil
}

func (p *parser) peek() token { return p.toks[p.i] }

func (p *parser) advance() token {
	t := p.toks[p.i]
	if t.kind != tokEOF {
		p.i++
	}
	return t
}

// accept takes punctuation or a keyword s when it comes next.
func (p *parser) accept(s string) bool {
	t := p.peek()
	if (t.kind == tokPunct || t.kind == tokKeyword) && t.text == s {
		p.i++
		return true
	}
	return false
}

func (p *parser) unexpected(t token, want string) error {
	return &SyntaxError{File: p.file, Pos: t.pos, Msg: fmt.Sprintf("unexpected %s; expected %s", t.describe(), want)}
}

func (p *parser) expect(s string) error {
	if p.accept(s) {
		return nil
	}
	return p.unexpected(p.peek(), "`"+s+"`")
}

func (p *parser) statement() (statement, error) {
	t := p.advance()
	switch {
	case t.kind == tokKeyword && t.text == "import":
		return p.importStatement(t)
	case t.kind != tokIdent:
		return statement{}, p.unexpected(t, "a key such as `name`, or `import`")
	case p.accept("="):
		v, err := p.value(0)
		return statement{key: t.text, value: v, pos: t.pos}, err
	case p.accept("("):
		obj := newObject()
		err := p.series(")", func() error {
			l := p.advance()
			if l.kind != tokIdent && l.kind != tokString {
				return p.unexpected(l, "a label")
			}
			if err := p.expect(":"); err != nil {
				return err
			}
			v, err := p.value(1)
			obj.set(l.text, v, l.pos)
			return err
		})
		return statement{key: t.text, value: obj, pos: t.pos}, err
	}
	return statement{}, p.unexpected(p.peek(), "`=` or `(` after `"+t.text+"`")
}

// importStatement reads the rest of `import [kind] { items } [for kind]`.
func (p *parser) importStatement(start token) (statement, error) {
	key := "import"
	kind := func(t token) (string, error) {
		switch {
		case t.kind == tokString && t.text == "test":
			return "test-import", nil
		case t.kind == tokString && t.text == "wbtest":
			return "wbtest-import", nil
		}
		return "", p.unexpected(t, `"test" or "wbtest"`)
	}
	legacy := false
	if p.peek().kind == tokString {
		k, err := kind(p.advance())
		if err != nil {
			return statement{}, err
		}
		key, legacy = k, true
	}
	if err := p.expect("{"); err != nil {
		return statement{}, err
	}
	var items []any
	err := p.series("}", func() error {
		t := p.advance()
		if t.kind != tokString {
			return p.unexpected(t, "a quoted import such as \"owner/module@1.0.0\"")
		}
		aliased := p.accept("as")
		if a := p.peek(); a.kind == tokPackage {
			p.i++
			alias := newObject()
			alias.set("path", t.text, t.pos)
			alias.set("alias", a.text, a.pos)
			items = append(items, alias)
			return nil
		} else if aliased {
			return p.unexpected(a, "an alias such as @name after `as`")
		}
		items = append(items, t.text)
		return nil
	})
	if err != nil {
		return statement{}, err
	}
	if !legacy && p.accept("for") {
		k, err := kind(p.advance())
		if err != nil {
			return statement{}, err
		}
		key = k
	}
	return statement{key: key, value: items, pos: start.pos}, nil
}

// series reads elements with elem until close, separated by commas, with
// one trailing comma allowed.
func (p *parser) series(close string, elem func() error) error {
	for !p.accept(close) {
		if err := elem(); err != nil {
			return err
		}
		if p.accept(",") {
			continue
		}
		if !p.accept(close) {
			return p.unexpected(p.peek(), "`,` or `"+close+"`")
		}
		return nil
	}
	return nil
}

func (p *parser) value(depth int) (any, error) {
	t := p.advance()
	if depth > maxDSLDepth {
		return nil, &SyntaxError{File: p.file, Pos: t.pos, Msg: fmt.Sprintf("nested deeper than %d levels", maxDSLDepth)}
	}
	switch {
	case t.kind == tokString:
		return t.text, nil
	case t.kind == tokInt:
		return t.num, nil
	case t.kind == tokKeyword && (t.text == "true" || t.text == "false"):
		return t.text == "true", nil
	case t.kind == tokPunct && t.text == "[":
		arr := []any{}
		err := p.series("]", func() error {
			v, err := p.value(depth + 1)
			arr = append(arr, v)
			return err
		})
		return arr, err
	case t.kind == tokPunct && t.text == "{":
		obj := newObject()
		err := p.series("}", func() error {
			k := p.advance()
			if k.kind != tokString {
				return p.unexpected(k, "a quoted key")
			}
			if err := p.expect(":"); err != nil {
				return err
			}
			v, err := p.value(depth + 1)
			obj.set(k.text, v, k.pos)
			return err
		})
		return obj, err
	}
	return nil, p.unexpected(t, "a value (a string, number, true, false, [...] or {...})")
}
