package auth

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"
)

// fileFormat is the on-disk schema. YAML and JSON are both accepted because
// sigs.k8s.io/yaml converts YAML to JSON before decoding.
type fileFormat struct {
	Principals []filePrincipal `json:"principals"`
}

type filePrincipal struct {
	Name         string   `json:"name"`
	Role         Role     `json:"role"`
	TokenSHA256  string   `json:"token_sha256"`
	MTLSIdentity string   `json:"mtls_identity"`
	Buckets      []string `json:"buckets"`
}

// parse decodes and validates a principals file. Error messages name the
// principal and field but never echo token_sha256 values; decoding errors
// from encoding/json report types and field names, not string values.
func parse(data []byte) (*table, error) {
	var ff fileFormat
	// Strict: a misspelt field (e.g. "bucket") must not silently widen or
	// narrow access.
	if err := yaml.UnmarshalStrict(data, &ff); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	// An empty table would lock every caller out; it is far more likely a
	// truncated or wrong file than intent.
	if len(ff.Principals) == 0 {
		return nil, errors.New("field principals: at least one principal is required")
	}

	t := &table{identities: make(map[string]*Principal)}
	names := make(map[string]int)
	hashes := make(map[string]string)
	var errs []error
	for i, fp := range ff.Principals {
		ref := fmt.Sprintf("principals[%d]", i)
		if fp.Name != "" {
			ref = fmt.Sprintf("principals[%d] (%q)", i, fp.Name)
		}
		ok := true
		fail := func(field, format string, args ...any) {
			ok = false
			errs = append(errs, fmt.Errorf("%s: field %s: %s", ref, field, fmt.Sprintf(format, args...)))
		}

		switch {
		case fp.Name == "":
			fail("name", "required")
		default:
			if j, dup := names[fp.Name]; dup {
				fail("name", "duplicates principals[%d]", j)
			} else {
				names[fp.Name] = i
			}
		}

		switch fp.Role {
		case RoleAdmin, RoleTenant:
		case "":
			fail("role", "required (admin or tenant)")
		default:
			fail("role", "must be admin or tenant")
		}

		var hash []byte
		switch {
		case fp.TokenSHA256 != "" && fp.MTLSIdentity != "":
			fail("token_sha256", "exactly one of token_sha256 or mtls_identity is allowed, both set")
		case fp.TokenSHA256 == "" && fp.MTLSIdentity == "":
			fail("token_sha256", "exactly one of token_sha256 or mtls_identity is required, neither set")
		case fp.TokenSHA256 != "":
			// The value is never echoed: a common mistake is pasting the
			// token itself here, and the error must not leak it.
			if !isLowerHex64(fp.TokenSHA256) {
				fail("token_sha256", "must be 64 lowercase hex characters (the sha256 of the token, not the token)")
				break
			}
			if other, dup := hashes[fp.TokenSHA256]; dup {
				// Two principals sharing a token would make FromToken ambiguous.
				fail("token_sha256", "same token hash as principal %q", other)
				break
			}
			hashes[fp.TokenSHA256] = fp.Name
			hash, _ = hex.DecodeString(fp.TokenSHA256) // validated above
		default:
			if _, dup := t.identities[fp.MTLSIdentity]; dup {
				fail("mtls_identity", "duplicates another principal's identity")
			}
		}

		// A tenant without patterns is allowed: it owns only what it claims.
		if fp.Role == RoleAdmin && len(fp.Buckets) > 0 {
			// Admins own every bucket; a list here suggests the author
			// expected a restriction that would not be enforced.
			fail("buckets", "not allowed for admin (admins own every bucket)")
		}
		for j, pat := range fp.Buckets {
			if err := validatePattern(pat); err != nil {
				fail(fmt.Sprintf("buckets[%d]", j), "%v", err)
			}
		}

		if !ok {
			continue
		}
		p := &Principal{Name: fp.Name, Role: fp.Role, Buckets: append([]string(nil), fp.Buckets...)}
		if hash != nil {
			t.tokens = append(t.tokens, tokenEntry{hash: hash, principal: p})
		} else {
			t.identities[fp.MTLSIdentity] = p
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return t, nil
}

// validatePattern enforces the pattern grammar: non-empty, at most one '*',
// and only as the last character, so matching stays a simple prefix test.
func validatePattern(pat string) error {
	switch {
	case pat == "":
		return errors.New("empty pattern")
	case strings.Count(pat, "*") > 1:
		return errors.New("at most one '*' is allowed")
	case strings.Contains(pat, "*") && !strings.HasSuffix(pat, "*"):
		return errors.New("'*' is only allowed at the end")
	}
	return nil
}

func isLowerHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
