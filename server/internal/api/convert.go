package api

import (
	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
	"github.com/corsd/corsd/server/internal/s3cors"
)

// The engine's enums carry the proto's numbers, so converting is a cast;
// TestEnumsAgreeWithProto keeps them in step.

func toProtoConfig(c *s3cors.Configuration) *corsdv1.CorsConfiguration {
	out := &corsdv1.CorsConfiguration{Rules: make([]*corsdv1.CorsRule, len(c.Rules))}
	for i, r := range c.Rules {
		out.Rules[i] = &corsdv1.CorsRule{
			Id:             r.ID,
			AllowedMethods: r.AllowedMethods,
			AllowedOrigins: r.AllowedOrigins,
			AllowedHeaders: r.AllowedHeaders,
			ExposeHeaders:  r.ExposeHeaders,
			MaxAgeSeconds:  r.MaxAgeSeconds,
		}
	}
	return out
}

func fromProtoConfig(p *corsdv1.CorsConfiguration) *s3cors.Configuration {
	c := &s3cors.Configuration{Rules: make([]s3cors.Rule, len(p.GetRules()))}
	for i, r := range p.GetRules() {
		c.Rules[i] = s3cors.Rule{
			ID:             r.Id,
			AllowedMethods: r.GetAllowedMethods(),
			AllowedOrigins: r.GetAllowedOrigins(),
			AllowedHeaders: r.GetAllowedHeaders(),
			ExposeHeaders:  r.GetExposeHeaders(),
			MaxAgeSeconds:  r.MaxAgeSeconds,
		}
	}
	return c
}

// toProtoResponse renders an engine result. Headers share one backing array
// so a decision costs two allocations for them, not one per header.
func toProtoResponse(res *s3cors.Result, etag, decisionID string) *corsdv1.EvaluateResponse {
	resp := &corsdv1.EvaluateResponse{
		Status:     int32(res.Status),
		Kind:       corsdv1.RequestKind(res.Kind),
		Verdict:    corsdv1.Verdict(res.Verdict),
		Reason:     corsdv1.Reason(res.Reason),
		Etag:       etag,
		DecisionId: decisionID,
	}
	if hs := res.Headers(); len(hs) > 0 {
		arr := make([]corsdv1.HttpHeader, len(hs))
		resp.Headers = make([]*corsdv1.HttpHeader, len(hs))
		for i, h := range hs {
			arr[i].Name, arr[i].Value = h.Name, h.Value
			resp.Headers[i] = &arr[i]
		}
	}
	if res.Verdict == s3cors.VerdictRefused {
		e := res.Error
		resp.Error = &corsdv1.S3Error{Code: e.Code, Message: e.Message, Method: e.Method, ResourceType: e.ResourceType, Body: e.Body}
	}
	if res.RuleIndex >= 0 {
		idx := int32(res.RuleIndex)
		resp.MatchedRuleIndex = &idx
		resp.MatchedRuleId = res.RuleID
	}
	if res.Trace != nil {
		resp.Trace = make([]*corsdv1.RuleTrace, len(res.Trace))
		for i, t := range res.Trace {
			resp.Trace[i] = &corsdv1.RuleTrace{RuleIndex: int32(t.Index), RuleId: t.ID,
				Mismatch: corsdv1.Mismatch(t.Mismatch), Header: t.Header}
		}
	}
	return resp
}

func toProtoFindings(fs []s3cors.Finding) []*corsdv1.Finding {
	out := make([]*corsdv1.Finding, len(fs))
	for i, f := range fs {
		out[i] = &corsdv1.Finding{Code: f.Code, Severity: corsdv1.Severity(f.Severity), RuleIndex: int32(f.RuleIndex),
			RuleId: f.RuleID, Message: f.Message, Fix: f.Fix}
	}
	return out
}
