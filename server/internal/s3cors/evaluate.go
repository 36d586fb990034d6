package s3cors

import (
	"unsafe"
)

// Request is what S3 looks at to answer a cross-origin request. Empty
// strings mean absent: S3 treats an empty Origin as no Origin (spec §3.2),
// and an empty Access-Control-Request-Method or -Headers as not sent
// (spec §3.4).
type Request struct {
	// BucketMissing tells that the bucket does not exist (spec §7).
	BucketMissing bool
	// Key is the object key; "" when the URL named the bucket. It decides the
	// ResourceType of a "not allowed" refusal (spec §8.6).
	Key string
	// Method is the HTTP method as received; only "OPTIONS" makes a preflight.
	Method string
	// Origin is the Origin header.
	Origin string
	// AccessControlRequestMethod is the Access-Control-Request-Method header.
	AccessControlRequestMethod string
	// AccessControlRequestHeaders is the raw Access-Control-Request-Headers
	// value; several header lines joined with ",".
	AccessControlRequestHeaders string
	// RequestID and HostID fill the RequestId and HostId of an error body.
	RequestID, HostID string
	// Explain asks for Result.Trace.
	Explain bool
}

// Kind classifies a request (spec §2).
type Kind uint8

// Request kinds.
const (
	KindNonCORS   Kind = iota + 1 // no Origin
	KindPreflight                 // OPTIONS with Origin
	KindActual                    // any other method with Origin
)

// Verdict is what the caller must do with the request.
type Verdict uint8

// Verdicts.
const (
	// VerdictAllowed: a rule matched; answer a preflight with Status and
	// Headers, or add Headers to the response of an actual request.
	VerdictAllowed Verdict = iota + 1
	// VerdictRefused: answer the preflight with Status, Headers and
	// Error.Body.
	VerdictRefused
	// VerdictPass: process the request as if CORS did not exist (a non-CORS
	// request, or an actual request no rule matched; S3 never refuses those,
	// spec §5.1). Headers holds only what Options.VaryAlways adds.
	VerdictPass
)

// Reason says why the verdict was reached.
type Reason uint8

// Reasons.
const (
	ReasonMatched              Reason = iota + 1 // a rule matched
	ReasonNoOrigin                               // no Origin header
	ReasonBucketNotFound                         // the bucket does not exist
	ReasonCORSNotEnabled                         // the bucket has no CORS configuration
	ReasonMissingRequestMethod                   // preflight without Access-Control-Request-Method
	ReasonInvalidRequestMethod                   // Access-Control-Request-Method not GET, PUT, HEAD, POST or DELETE
	ReasonNoRuleMatched                          // no rule allows the origin, method and headers together
)

// Mismatch is the first condition a rule failed on, in Explain traces.
type Mismatch uint8

// Mismatches: the first three in the order a rule's conditions are checked.
const (
	MismatchOrigin Mismatch = iota + 1 // no AllowedOrigin matches the Origin
	MismatchMethod                     // the method is not an AllowedMethod
	MismatchHeader                     // a requested header is not an AllowedHeader
	MismatchNone                       // the rule matched
)

// RuleTrace explains one rule's outcome.
type RuleTrace struct {
	Index    int
	ID       string
	Mismatch Mismatch
	// Header is the first requested header the rule refused (lower case).
	Header string
}

// Header is one response header, in S3's casing.
type Header struct{ Name, Value string }

// ErrorResponse is the S3 error a refused preflight is answered with.
type ErrorResponse struct {
	Code, Message string
	// Method and ResourceType are only in AccessForbidden (403) bodies.
	Method, ResourceType string
	// Body is the complete XML document S3 sends.
	Body string
}

// Result is the answer to a Request. Reuse one Result across calls to avoid
// allocating: Evaluate resets it.
type Result struct {
	Kind    Kind
	Verdict Verdict
	Reason  Reason
	// Status is the HTTP status of a preflight's answer (200, 400 or 403);
	// 0 for every other request, whose status is the upstream's.
	Status int
	// Error is set when Verdict is VerdictRefused.
	Error ErrorResponse
	// RuleIndex is the matched rule's position (0-based), -1 when none.
	RuleIndex int
	// RuleID is the matched rule's ID, and HasRuleID whether it has one.
	RuleID    string
	HasRuleID bool
	// Trace is set when the request asked for Explain and rules were tried.
	Trace []RuleTrace

	headers  [8]Header
	nHeaders int
}

// Headers returns the headers to send, in a stable order: the CORS headers
// S3 adds (Access-Control-Allow-Origin, -Allow-Credentials, -Allow-Methods,
// -Allow-Headers, -Expose-Headers, -Max-Age, then Vary), or for a refused
// preflight the Content-Type of its XML body (and Connection: close on a
// 400, spec §6). The slice aliases r; copy it to keep it past r's reuse.
func (r *Result) Headers() []Header { return r.headers[:r.nHeaders] }

func (r *Result) add(name, value string) {
	r.headers[r.nHeaders] = Header{name, value}
	r.nHeaders++
}

// Header names, in S3's casing.
const (
	HeaderAllowOrigin      = "Access-Control-Allow-Origin"
	HeaderAllowCredentials = "Access-Control-Allow-Credentials"
	HeaderAllowMethods     = "Access-Control-Allow-Methods"
	HeaderAllowHeaders     = "Access-Control-Allow-Headers"
	HeaderExposeHeaders    = "Access-Control-Expose-Headers"
	HeaderMaxAge           = "Access-Control-Max-Age"
	HeaderVary             = "Vary"

	varyValue = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
)

// Evaluate answers req as S3 would for a bucket whose configuration compiled
// to rs; a nil rs means the bucket has no CORS configuration. It is the
// decision order of spec §3, §5 and §7:
//
//	no Origin             OPTIONS: 400 BadRequest; otherwise pass, no headers
//	bucket missing        OPTIONS: 403 "Bucket not found"; otherwise pass
//	no configuration      OPTIONS: 403 "CORS is not enabled"; otherwise pass
//	OPTIONS without ACRM  400 "Invalid Access-Control-Request-Method: null"
//	OPTIONS, ACRM unknown 400 "Invalid Access-Control-Request-Method: X"
//	no rule matches       OPTIONS: 403 "This CORS request is not allowed"; otherwise pass
//	first matching rule   its headers; 200 for OPTIONS
//
// An actual request is matched on its Access-Control-Request-Method when it
// carries one, else on its own method, and on its
// Access-Control-Request-Headers only (spec §5.2); it is never refused.
func Evaluate(rs *RuleSet, req *Request, res *Result) {
	*res = Result{RuleIndex: -1}
	preflight := req.Method == "OPTIONS"
	acrm := req.AccessControlRequestMethod
	if req.Origin == "" {
		res.Kind, res.Reason = KindNonCORS, ReasonNoOrigin
		if preflight {
			refuse(rs, req, res, 400, CodeBadRequest, msgNoOrigin, "", "")
			return
		}
		pass(rs, res)
		return
	}
	res.Kind = KindActual
	if preflight {
		res.Kind = KindPreflight
	}
	switch {
	case req.BucketMissing:
		res.Reason = ReasonBucketNotFound
		rs = nil // a missing bucket has no configuration, whatever the caller passed
		if preflight {
			refuse(rs, req, res, 403, CodeAccessForbidden, msgBucketNotFound, methodOr(acrm), "BUCKET")
			return
		}
		pass(rs, res)
		return
	case rs == nil:
		res.Reason = ReasonCORSNotEnabled
		if preflight {
			refuse(rs, req, res, 403, CodeAccessForbidden, msgNotEnabled, methodOr(acrm), "BUCKET")
			return
		}
		pass(rs, res)
		return
	}
	method := acrm
	if preflight {
		if acrm == "" {
			res.Reason = ReasonMissingRequestMethod
			refuse(rs, req, res, 400, CodeBadRequest, msgInvalidACRM+"null", "", "")
			return
		}
		if methodBit(acrm) == 0 {
			res.Reason = ReasonInvalidRequestMethod
			refuse(rs, req, res, 400, CodeBadRequest, msgInvalidACRM+acrm, "", "")
			return
		}
	} else if method == "" {
		method = req.Method
	}
	headers := normalizeHeaders(req.AccessControlRequestHeaders)
	var idx int
	if req.Explain {
		idx, res.Trace = rs.explain(req.Origin, methodBit(method), headers)
	} else {
		idx = rs.match(req.Origin, methodBit(method), headers)
	}
	if idx < 0 {
		res.Reason = ReasonNoRuleMatched
		if preflight {
			resource := "OBJECT"
			if req.Key == "" {
				resource = "BUCKET"
			}
			refuse(rs, req, res, 403, CodeAccessForbidden, msgNotAllowed, acrm, resource)
			return
		}
		pass(rs, res)
		return
	}
	cr := rs.rule(idx)
	res.Verdict, res.Reason = VerdictAllowed, ReasonMatched
	if preflight {
		res.Status = 200
	}
	res.RuleIndex, res.RuleID, res.HasRuleID = idx, str(rs.text(), cr.id), cr.hasID
	if cr.anyOrigin {
		res.add(HeaderAllowOrigin, "*")
	} else {
		res.add(HeaderAllowOrigin, req.Origin)
		res.add(HeaderAllowCredentials, "true")
	}
	res.add(HeaderAllowMethods, str(rs.text(), cr.allowMethods))
	if headers != "" {
		res.add(HeaderAllowHeaders, headers)
	}
	if cr.expose.n != 0 {
		res.add(HeaderExposeHeaders, str(rs.text(), cr.expose))
	}
	if cr.maxAge.n != 0 {
		res.add(HeaderMaxAge, str(rs.text(), cr.maxAge))
	}
	res.add(HeaderVary, varyValue)
}

// Evaluate is the method form of the package-level Evaluate.
func (rs *RuleSet) Evaluate(req *Request, res *Result) { Evaluate(rs, req, res) }

func methodOr(acrm string) string {
	if acrm == "" {
		return "OPTIONS"
	}
	return acrm
}

func pass(rs *RuleSet, res *Result) {
	res.Verdict = VerdictPass
	if rs != nil && rs.opts.VaryAlways {
		res.add(HeaderVary, varyValue)
	}
}

func refuse(rs *RuleSet, req *Request, res *Result, status int, code, msg, method, resource string) {
	res.Verdict, res.Status = VerdictRefused, status
	res.Error = ErrorResponse{Code: code, Message: msg, Method: method, ResourceType: resource,
		Body: ErrorBody(code, msg, method, resource, req.RequestID, req.HostID)}
	res.add("Content-Type", "application/xml")
	if status == 400 {
		res.add("Connection", "close")
	}
	if rs != nil && rs.opts.VaryAlways {
		res.add(HeaderVary, varyValue)
	}
}

const (
	errorBodyHead = `<?xml version="1.0" encoding="UTF-8"?>` + "\n<Error>"
	// errorBodyTags is every tag ErrorBody may write after the head.
	errorBodyTags = "<Code></Code><Message></Message><Method></Method><ResourceType></ResourceType><RequestId></RequestId><HostId></HostId></Error>"
)

// ErrorBody renders an S3 error document with S3's element order (spec §6):
// Code, Message, then Method and ResourceType when given, RequestId, HostId.
func ErrorBody(code, msg, method, resource, requestID, hostID string) string {
	// Room for the declaration, the tags and every value unescaped: the
	// body is one allocation, handed over as the string without a copy.
	b := make([]byte, 0, len(errorBodyHead)+len(errorBodyTags)+
		len(code)+len(msg)+len(method)+len(resource)+len(requestID)+len(hostID))
	b = append(b, errorBodyHead...)
	b = appendElem(b, "Code", code)
	switch msg {
	case msgNotAllowed, msgNotEnabled, msgBucketNotFound, msgNoOrigin:
		// The messages of refused preflights hold nothing to escape
		// (TestRefusalMessagesNeedNoEscaping); the longest is 220 bytes.
		b = append(b, "<Message>"...)
		b = append(b, msg...)
		b = append(b, "</Message>"...)
	default:
		b = appendElem(b, "Message", msg)
	}
	if method != "" {
		b = appendElem(b, "Method", method)
	}
	if resource != "" {
		b = appendElem(b, "ResourceType", resource)
	}
	b = appendElem(b, "RequestId", requestID)
	b = appendElem(b, "HostId", hostID)
	b = append(b, "</Error>"...)
	// b is never written again, so the string may share its bytes.
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// match returns the index of the first rule that allows origin, the method
// bit and every header of the normalised list, or -1.
//
// It walks three ascending candidate lists at once: the rules naming the
// origin exactly, the wildcard patterns (in rule order, tested as reached)
// and the rules allowing any origin. Taking the smallest head each step
// visits the candidates in rule order, so the first one that passes the
// method and header checks is the first match of a linear scan.
func (rs *RuleSet) match(origin string, bit uint8, headers string) int {
	if bit == 0 {
		return -1 // no rule allows a method S3 does not know
	}
	wild, pats, anyo, text := rs.wild(), rs.wildPats(), rs.anyOrigin(), rs.text()
	ex := rs.exact()
	exact := ex.lookup(text, origin)
	wc := rs.wildAll()
	if ix, ok := rs.wildIndex(); ok {
		var buf [16]uint16
		wc = ix.candidates(origin, buf[:0])
	}
	last := -1
	for {
		// Advance the wildcard candidates to the next matching pattern.
		for len(wc) > 0 && (int(wild[wc[0]].rule) <= last || !wild[wc[0]].mayMatch(origin) || !pats[wc[0]].match(text, origin)) {
			wc = wc[1:]
		}
		next := 256
		if len(exact) > 0 {
			next = int(exact[0])
		}
		if len(wc) > 0 && int(wild[wc[0]].rule) < next {
			next = int(wild[wc[0]].rule)
		}
		if len(anyo) > 0 && int(anyo[0]) < next {
			next = int(anyo[0])
		}
		if next == 256 {
			return -1
		}
		if len(exact) > 0 && int(exact[0]) == next {
			exact = exact[1:]
		}
		if len(anyo) > 0 && int(anyo[0]) == next {
			anyo = anyo[1:]
		}
		last = next
		cr := rs.rule(next)
		if cr.methods&bit == 0 {
			continue
		}
		if _, ok := rs.allowsHeaders(cr, headers); ok {
			return next
		}
	}
}

// explain is match's linear twin: it tries every rule in order until one
// matches and records why each failed. It is only used when asked for, so it
// favours clarity over speed.
func (rs *RuleSet) explain(origin string, bit uint8, headers string) (int, []RuleTrace) {
	text, rules := rs.text(), rs.rules()
	trace := make([]RuleTrace, 0, len(rules))
	for i := range rules {
		cr := &rules[i]
		t := RuleTrace{Index: i, ID: str(text, cr.id)}
		originOK := false
		for _, m := range rs.origins()[cr.origins.off : cr.origins.off+cr.origins.n] {
			if m.match(text, origin) {
				originOK = true
				break
			}
		}
		switch {
		case !originOK:
			t.Mismatch = MismatchOrigin
		case cr.methods&bit == 0:
			t.Mismatch = MismatchMethod
		default:
			if h, ok := rs.allowsHeaders(cr, headers); !ok {
				t.Mismatch, t.Header = MismatchHeader, h
			} else {
				t.Mismatch = MismatchNone
			}
		}
		trace = append(trace, t)
		if t.Mismatch == MismatchNone {
			return i, trace
		}
	}
	return -1, trace
}

// normalizeHeaders turns an Access-Control-Request-Headers value into the
// form S3 echoes in Access-Control-Allow-Headers and matches on: items split
// on ',', trimmed of spaces and tabs, empty items dropped, ASCII
// lower-cased, joined with ", " (spec §3.4, §4). It allocates only the
// result, and nothing when the value is already in that form.
//
// It runs on every preflight that requests headers, so it works in a stack
// buffer (the result is at most one byte per comma longer than the value)
// and copies whole items rather than bytes.
func normalizeHeaders(raw string) string {
	if raw == "" {
		return ""
	}
	var stack [128]byte
	buf := stack[:0]
	if 2*len(raw) > len(stack) {
		buf = make([]byte, 0, 2*len(raw))
	}
	for i := 0; i < len(raw); i++ {
		for i < len(raw) && (raw[i] == ' ' || raw[i] == '\t') {
			i++
		}
		start := i
		for i < len(raw) && raw[i] != ',' {
			i++
		}
		end := i
		for end > start && (raw[end-1] == ' ' || raw[end-1] == '\t') {
			end--
		}
		if end == start {
			continue
		}
		if len(buf) > 0 {
			buf = append(buf, ',', ' ')
		}
		w := len(buf)
		buf = append(buf, raw[start:end]...)
		for j := w; j < len(buf); j++ {
			if c := buf[j]; c >= 'A' && c <= 'Z' {
				buf[j] = c + 'a' - 'A'
			}
		}
	}
	if string(buf) == raw {
		return raw
	}
	return string(buf)
}
