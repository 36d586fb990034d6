package jsoncodec

import (
	"unicode/utf8"

	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
)

// parseRequest parses the common shape of an EvaluateRequest: one flat JSON
// object whose members are known fields (by JSON or proto name, each at
// most once) with string values free of escapes, or true/false for the
// booleans. It reports false, leaving m untouched, for anything else (null,
// numbers, escapes, unknown or repeated fields, invalid UTF-8, trailing
// data), which protojson then parses or refuses with its own error.
func parseRequest(data []byte, m *corsdv1.EvaluateRequest) bool {
	p := parser{data: data}
	var f requestFields
	p.ws()
	if !p.object(&f) {
		return false
	}
	p.ws()
	if p.i != len(p.data) {
		return false
	}
	m.Reset()
	f.apply(string(data), m)
	return true
}

// parseBatchRequest parses {"requests":[…]} whose elements parseRequest
// would accept; false, leaving m untouched, otherwise.
func parseBatchRequest(data []byte, m *corsdv1.EvaluateBatchRequest) bool {
	p := parser{data: data}
	var fs []requestFields
	p.ws()
	if !p.consume('{') {
		return false
	}
	p.ws()
	if !p.consume('}') {
		start, end, ok := p.str()
		if !ok || string(data[start:end]) != "requests" {
			return false
		}
		p.ws()
		if !p.consume(':') {
			return false
		}
		p.ws()
		if !p.consume('[') {
			return false
		}
		p.ws()
		if !p.consume(']') {
			fs = make([]requestFields, 0, 16)
			for {
				fs = append(fs, requestFields{})
				if !p.object(&fs[len(fs)-1]) {
					return false
				}
				p.ws()
				if p.consume(',') {
					p.ws()
					continue
				}
				if p.consume(']') {
					break
				}
				return false
			}
		}
		p.ws()
		if !p.consume('}') {
			return false
		}
	}
	p.ws()
	if p.i != len(p.data) {
		return false
	}
	m.Reset()
	if len(fs) > 0 {
		// One conversion for the whole body; every value shares it, and
		// the messages are allocated together.
		all := string(data)
		msgs := make([]corsdv1.EvaluateRequest, len(fs))
		m.Requests = make([]*corsdv1.EvaluateRequest, len(fs))
		for i := range fs {
			fs[i].apply(all, &msgs[i])
			m.Requests[i] = &msgs[i]
		}
	}
	return true
}

// requestFields is one parsed request object: where each string value
// lies in the body, the booleans, and which fields were present.
type requestFields struct {
	spans [10][2]int // by field number
	bools [10]bool
	set   uint16 // field numbers present
}

// apply fills m (which must be empty) from f; all is the whole body as a
// string, so values are substrings of one allocation.
func (f *requestFields) apply(all string, m *corsdv1.EvaluateRequest) {
	val := func(num int) string { return all[f.spans[num][0]:f.spans[num][1]] }
	opt := func(num int) *string {
		if f.set&(1<<num) == 0 {
			return nil
		}
		v := val(num)
		return &v
	}
	m.Bucket = val(fieldBucket)
	m.Key = val(fieldKey)
	m.Method = val(fieldMethod)
	m.RequestId = val(fieldRequestID)
	m.BucketMissing = f.bools[fieldBucketMissing]
	m.Explain = f.bools[fieldExplain]
	m.Origin = opt(fieldOrigin)
	m.AccessControlRequestMethod = opt(fieldACRM)
	m.AccessControlRequestHeaders = opt(fieldACRH)
}

// object parses one request object into f.
func (p *parser) object(f *requestFields) bool {
	if !p.consume('{') {
		return false
	}
	p.ws()
	if p.consume('}') {
		return true
	}
	for {
		start, end, ok := p.str()
		if !ok {
			return false
		}
		num := requestField(p.data[start:end])
		if num == 0 || f.set&(1<<num) != 0 {
			return false
		}
		f.set |= 1 << num
		p.ws()
		if !p.consume(':') {
			return false
		}
		p.ws()
		switch num {
		case fieldBucketMissing, fieldExplain:
			b, ok := p.boolean()
			if !ok {
				return false
			}
			f.bools[num] = b
		default:
			start, end, ok := p.str()
			if !ok {
				return false
			}
			f.spans[num] = [2]int{start, end}
		}
		p.ws()
		if p.consume(',') {
			p.ws()
			continue
		}
		return p.consume('}')
	}
}

// EvaluateRequest's field numbers.
const (
	fieldBucket        = 1
	fieldKey           = 2
	fieldMethod        = 3
	fieldOrigin        = 4
	fieldACRM          = 5
	fieldACRH          = 6
	fieldBucketMissing = 7
	fieldExplain       = 8
	fieldRequestID     = 9
)

// requestField maps a JSON member name to its field number, 0 if unknown.
// protojson accepts both the lowerCamelCase JSON name and the proto name.
func requestField(key []byte) int {
	switch string(key) {
	case "bucket":
		return fieldBucket
	case "key":
		return fieldKey
	case "method":
		return fieldMethod
	case "origin":
		return fieldOrigin
	case "accessControlRequestMethod", "access_control_request_method":
		return fieldACRM
	case "accessControlRequestHeaders", "access_control_request_headers":
		return fieldACRH
	case "bucketMissing", "bucket_missing":
		return fieldBucketMissing
	case "explain":
		return fieldExplain
	case "requestId", "request_id":
		return fieldRequestID
	}
	return 0
}

type parser struct {
	data []byte
	i    int
}

// ws skips JSON whitespace.
func (p *parser) ws() {
	for p.i < len(p.data) {
		switch p.data[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) consume(c byte) bool {
	if p.i < len(p.data) && p.data[p.i] == c {
		p.i++
		return true
	}
	return false
}

// str reads a string with no escapes and no control characters that is
// valid UTF-8, returning the bounds of its content (without the quotes).
func (p *parser) str() (start, end int, ok bool) {
	if !p.consume('"') {
		return 0, 0, false
	}
	start = p.i
	ascii := true
	for p.i < len(p.data) {
		c := p.data[p.i]
		switch {
		case c == '"':
			end = p.i
			p.i++
			if !ascii && !utf8.Valid(p.data[start:end]) {
				return 0, 0, false
			}
			return start, end, true
		case c == '\\' || c < 0x20:
			return 0, 0, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
		p.i++
	}
	return 0, 0, false
}

// boolean reads true or false.
func (p *parser) boolean() (bool, bool) {
	rest := p.data[p.i:]
	switch {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		p.i += 4
		return true, true
	case len(rest) >= 5 && string(rest[:5]) == "false":
		p.i += 5
		return false, true
	}
	return false, false
}
