package s3cors

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Namespace is the S3 XML namespace. PutBucketCors accepts documents with or
// without it; GetBucketCors always emits it.
const Namespace = "http://s3.amazonaws.com/doc/2006-03-01/"

// DecodeXML parses and validates a PutBucketCors body (spec §1.2, §1.3).
//
// The namespace is optional, a rule's members may come in any order and lists
// are flattened. Anything that is not well-formed or not of the schema
// (unknown elements, text where elements belong, a DOCTYPE, a second root, a
// non-integer MaxAgeSeconds) is MalformedXML; documents over 64 KiB are
// refused before any parsing. The schema is three levels deep, so a deeper
// element is refused as soon as it opens: nesting never costs more than the
// size limit allows, and no entity is ever expanded (encoding/xml knows only
// the five predefined ones).
func DecodeXML(data []byte) (*Configuration, error) {
	if len(data) > MaxDocumentSize {
		return nil, tooBig(len(data))
	}
	c, err := parseXML(data)
	if err != nil {
		return nil, err
	}
	if err := Validate(c); err != nil {
		return nil, err
	}
	return c, nil
}

func parseXML(data []byte) (*Configuration, error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	var (
		c       *Configuration
		rule    *Rule
		field   string // the open member element, "" when none
		text    strings.Builder
		rootEnd bool
		depth   int
		seenID  bool
		seenMax bool
	)
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, malformed("%v", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if !inNamespace(t.Name.Space) {
				return nil, malformed("element <%s> is in namespace %q", t.Name.Local, t.Name.Space)
			}
			switch depth {
			case 1:
				if rootEnd {
					return nil, malformed("content after the root element")
				}
				if t.Name.Local != "CORSConfiguration" {
					return nil, malformed("root element is <%s>, want <CORSConfiguration>", t.Name.Local)
				}
				c = &Configuration{}
			case 2:
				if t.Name.Local != "CORSRule" {
					return nil, malformed("unexpected element <%s> in <CORSConfiguration>", t.Name.Local)
				}
				if len(c.Rules) == MaxRules {
					// Stop early: a 64 KiB document of empty rules is otherwise
					// thousands of allocations for an answer known now.
					return nil, malformed("more than %d rules", MaxRules)
				}
				c.Rules = append(c.Rules, Rule{})
				rule = &c.Rules[len(c.Rules)-1]
				seenID, seenMax = false, false
			case 3:
				switch t.Name.Local {
				case "ID":
					if seenID {
						return nil, malformed("rule %d has more than one <ID>", len(c.Rules))
					}
					seenID = true
				case "MaxAgeSeconds":
					if seenMax {
						return nil, malformed("rule %d has more than one <MaxAgeSeconds>", len(c.Rules))
					}
					seenMax = true
				case "AllowedMethod", "AllowedOrigin", "AllowedHeader", "ExposeHeader":
				default:
					return nil, malformed("unexpected element <%s> in <CORSRule>", t.Name.Local)
				}
				field = t.Name.Local
				text.Reset()
			default:
				return nil, malformed("unexpected element <%s> inside <%s>", t.Name.Local, field)
			}
		case xml.EndElement:
			if depth == 3 {
				if err := setField(rule, field, text.String(), len(c.Rules)); err != nil {
					return nil, err
				}
				field = ""
			}
			if depth == 1 {
				rootEnd = true
			}
			depth--
		case xml.CharData:
			if depth == 3 {
				text.Write(t)
				continue
			}
			if len(bytes.TrimLeft(t, " \t\r\n")) != 0 {
				return nil, malformed("unexpected text %q", truncate(string(t), 32))
			}
		case xml.Directive:
			return nil, malformed("XML directives (DOCTYPE, ENTITY) are not allowed")
		case xml.Comment, xml.ProcInst:
		}
	}
	if c == nil || !rootEnd {
		return nil, malformed("no <CORSConfiguration> element")
	}
	return c, nil
}

func inNamespace(ns string) bool { return ns == "" || ns == Namespace }

func setField(r *Rule, field, v string, ruleNo int) error {
	switch field {
	case "ID":
		r.ID = &v
	case "AllowedMethod":
		r.AllowedMethods = append(r.AllowedMethods, v)
	case "AllowedOrigin":
		r.AllowedOrigins = append(r.AllowedOrigins, v)
	case "AllowedHeader":
		r.AllowedHeaders = append(r.AllowedHeaders, v)
	case "ExposeHeader":
		r.ExposeHeaders = append(r.ExposeHeaders, v)
	case "MaxAgeSeconds":
		// xsd:int: surrounding whitespace is collapsed, a sign is allowed.
		n, err := strconv.ParseInt(strings.Trim(v, " \t\r\n"), 10, 32)
		if err != nil {
			return malformed("rule %d: MaxAgeSeconds %q is not an integer", ruleNo, truncate(v, 32))
		}
		m := int32(n)
		r.MaxAgeSeconds = &m
	}
	return nil
}

// EncodeXML renders a configuration as S3's GetBucketCors body: the XML
// declaration, the namespaced root, and each rule's members in the model's
// order (ID, AllowedHeader, AllowedMethod, AllowedOrigin, ExposeHeader,
// MaxAgeSeconds), values in the order stored. DecodeXML(EncodeXML(c))
// equals c for every valid c, up to the nil/empty list distinction XML
// cannot carry.
func EncodeXML(c *Configuration) []byte {
	b := []byte(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	b = append(b, `<CORSConfiguration xmlns="`+Namespace+`">`...)
	for i := range c.Rules {
		r := &c.Rules[i]
		b = append(b, "<CORSRule>"...)
		if r.ID != nil {
			b = appendElem(b, "ID", *r.ID)
		}
		for _, v := range r.AllowedHeaders {
			b = appendElem(b, "AllowedHeader", v)
		}
		for _, v := range r.AllowedMethods {
			b = appendElem(b, "AllowedMethod", v)
		}
		for _, v := range r.AllowedOrigins {
			b = appendElem(b, "AllowedOrigin", v)
		}
		for _, v := range r.ExposeHeaders {
			b = appendElem(b, "ExposeHeader", v)
		}
		if r.MaxAgeSeconds != nil {
			b = appendElem(b, "MaxAgeSeconds", strconv.FormatInt(int64(*r.MaxAgeSeconds), 10))
		}
		b = append(b, "</CORSRule>"...)
	}
	return append(b, "</CORSConfiguration>"...)
}

// appendElem appends <name>v</name>, v escaped.
func appendElem(b []byte, name, v string) []byte {
	b = append(b, '<')
	b = append(b, name...)
	b = append(b, '>')
	b = appendEscaped(b, v)
	b = append(b, "</"...)
	b = append(b, name...)
	return append(b, '>')
}

// appendEscaped appends s as XML character data. Unlike xml.EscapeText it leaves
// quotes, apostrophes and tabs alone (S3's bodies carry "resource's"
// literally) and escapes only what a parser would otherwise change: markup
// characters and the carriage return, which parsers fold into a newline.
// Anything XML cannot carry (invalid UTF-8, control characters) becomes
// U+FFFD; validated configurations hold none.
func appendEscaped(b []byte, s string) []byte {
	last := 0
	for i := 0; i < len(s); {
		// Nearly every byte of an S3 message is printable ASCII other than
		// markup: those take one test each, no rune decoding.
		if xmlPlain(s[i]) {
			i++
			continue
		}
		r, n := rune(s[i]), 1
		if r >= utf8.RuneSelf {
			r, n = utf8.DecodeRuneInString(s[i:])
		}
		var esc string
		switch {
		case r == '&':
			esc = "&amp;"
		case r == '<':
			esc = "&lt;"
		case r == '>':
			esc = "&gt;"
		case r == '\r':
			esc = "&#xD;"
		case r == utf8.RuneError && n <= 1, !xmlChar(r):
			esc = "\uFFFD"
		default:
			i += n
			continue
		}
		b = append(b, s[last:i]...)
		b = append(b, esc...)
		i += n
		last = i
	}
	return append(b, s[last:]...)
}

// xmlPlain reports whether c is printable ASCII that XML character data
// carries as is (anything but '&', '<' and '>').
func xmlPlain(c byte) bool {
	return c >= 0x20 && c < 0x7f && c != '&' && c != '<' && c != '>'
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
