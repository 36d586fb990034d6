package s3cors

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// The JSON shapes a configuration arrives in (spec §1.2).
const (
	ShapeAWSCLI         = "aws-cli"        // {"CORSRules":[{"ID","AllowedHeaders",...,"MaxAgeSeconds"}]}
	ShapeConsole        = "console"        // [{"AllowedHeaders",...}]: the S3 console editor's bare array
	ShapeCloudFormation = "cloudformation" // {"CorsRules":[{"Id","AllowedHeaders","ExposedHeaders","MaxAge",...}]}
)

// memberNames maps one shape's JSON member names to the model.
type memberNames struct {
	id, headers, methods, origins, expose, maxAge string
	maxAgeString                                  bool // CloudFormation templates often quote integers
}

var (
	awsNames = memberNames{id: "ID", headers: "AllowedHeaders", methods: "AllowedMethods",
		origins: "AllowedOrigins", expose: "ExposeHeaders", maxAge: "MaxAgeSeconds"}
	cfnNames = memberNames{id: "Id", headers: "AllowedHeaders", methods: "AllowedMethods",
		origins: "AllowedOrigins", expose: "ExposedHeaders", maxAge: "MaxAge", maxAgeString: true}
)

// DecodeJSON parses and validates a configuration in any of the JSON shapes
// S3 users hold one in: the aws-cli/SDK `{"CORSRules":[...]}`, the S3
// console's bare array of rules, or CloudFormation's `{"CorsRules":[...]}`
// (also wrapped as `{"CorsConfiguration":{"CorsRules":[...]}}`). It returns
// the shape it recognised.
//
// Member names are matched exactly (encoding/json's case folding would accept
// `allowedorigins`, which no S3 tool does). Unknown members, wrong types and
// non-integer ages are MalformedXML: the error S3 gives once the document
// is sent as XML.
func DecodeJSON(data []byte) (*Configuration, string, error) {
	if len(data) > MaxDocumentSize {
		return nil, "", tooBig(len(data))
	}
	c, shape, err := parseJSON(data)
	if err != nil {
		return nil, "", err
	}
	if err := Validate(c); err != nil {
		return nil, "", err
	}
	return c, shape, nil
}

func parseJSON(data []byte) (*Configuration, string, error) {
	data = bytes.TrimLeft(data, " \t\r\n")
	if len(data) > 0 && data[0] == '[' {
		c, err := decodeRules(data, awsNames)
		return c, ShapeConsole, err
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, "", malformed("JSON: %v", err)
	}
	if len(top) != 1 {
		return nil, "", malformed(`JSON: want exactly one of "CORSRules", "CorsRules" or "CorsConfiguration" at the top level, got %d members`, len(top))
	}
	var k string
	var v json.RawMessage
	for k, v = range top {
	}
	switch k {
	case "CORSRules":
		c, err := decodeRules(v, awsNames)
		return c, ShapeAWSCLI, err
	case "CorsRules":
		c, err := decodeRules(v, cfnNames)
		return c, ShapeCloudFormation, err
	case "CorsConfiguration":
		var inner map[string]json.RawMessage
		if err := json.Unmarshal(v, &inner); err != nil {
			return nil, "", malformed("JSON CorsConfiguration: %v", err)
		}
		rules, ok := inner["CorsRules"]
		if len(inner) != 1 || !ok {
			return nil, "", malformed(`JSON CorsConfiguration: want exactly one member, "CorsRules"`)
		}
		c, err := decodeRules(rules, cfnNames)
		return c, ShapeCloudFormation, err
	}
	return nil, "", malformed("JSON: unknown top-level member %q", k)
}

func decodeRules(data json.RawMessage, names memberNames) (*Configuration, error) {
	var raw []map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, malformed("JSON rules: %v", err)
	}
	if len(raw) > MaxRules {
		return nil, malformed("more than %d rules", MaxRules)
	}
	c := &Configuration{Rules: make([]Rule, len(raw))}
	for i, m := range raw {
		if m == nil {
			return nil, malformed("JSON rule %d is null", i+1)
		}
		r := &c.Rules[i]
		for k, v := range m {
			var err error
			switch k {
			case names.id:
				err = decodeOptString(v, &r.ID)
			case names.headers:
				err = json.Unmarshal(v, &r.AllowedHeaders)
			case names.methods:
				err = json.Unmarshal(v, &r.AllowedMethods)
			case names.origins:
				err = json.Unmarshal(v, &r.AllowedOrigins)
			case names.expose:
				err = json.Unmarshal(v, &r.ExposeHeaders)
			case names.maxAge:
				err = decodeMaxAge(v, names.maxAgeString, &r.MaxAgeSeconds)
			default:
				return nil, malformed("JSON rule %d: unknown member %q", i+1, k)
			}
			if err != nil {
				if e, ok := err.(*Error); ok {
					return nil, e
				}
				return nil, malformed("JSON rule %d, %s: %v", i+1, k, err)
			}
		}
	}
	return c, nil
}

func decodeOptString(v json.RawMessage, dst **string) error {
	var s *string
	if err := json.Unmarshal(v, &s); err != nil {
		return err
	}
	*dst = s
	return nil
}

func decodeMaxAge(v json.RawMessage, allowString bool, dst **int32) error {
	lit := string(bytes.TrimSpace(v))
	if lit == "null" {
		*dst = nil
		return nil
	}
	if allowString && len(lit) > 0 && lit[0] == '"' {
		if err := json.Unmarshal(v, &lit); err != nil {
			return err
		}
	}
	n, err := strconv.ParseInt(lit, 10, 32)
	if err != nil {
		return malformed("MaxAgeSeconds %s is not an integer", truncate(lit, 32))
	}
	m := int32(n)
	*dst = &m
	return nil
}

// EncodeJSON renders a configuration in the aws-cli shape, indented, with
// lists that were sent empty kept as [] and absent members left out, so
// DecodeJSON(EncodeJSON(c)) equals c exactly.
func EncodeJSON(c *Configuration) []byte {
	type rule struct {
		ID             *string   `json:"ID,omitempty"`
		AllowedHeaders *[]string `json:"AllowedHeaders,omitempty"`
		AllowedMethods *[]string `json:"AllowedMethods,omitempty"`
		AllowedOrigins *[]string `json:"AllowedOrigins,omitempty"`
		ExposeHeaders  *[]string `json:"ExposeHeaders,omitempty"`
		MaxAgeSeconds  *int32    `json:"MaxAgeSeconds,omitempty"`
	}
	list := func(l []string) *[]string {
		if l == nil {
			return nil
		}
		return &l
	}
	doc := struct {
		CORSRules []rule `json:"CORSRules"`
	}{CORSRules: make([]rule, len(c.Rules))}
	for i, r := range c.Rules {
		doc.CORSRules[i] = rule{ID: r.ID, AllowedHeaders: list(r.AllowedHeaders), AllowedMethods: list(r.AllowedMethods),
			AllowedOrigins: list(r.AllowedOrigins), ExposeHeaders: list(r.ExposeHeaders), MaxAgeSeconds: r.MaxAgeSeconds}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		// Only strings, slices and ints: encoding cannot fail.
		return nil
	}
	return b.Bytes()
}
