package app

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"net/url"
)

// Redacted is the configuration with secrets masked, for logs and the
// debug endpoint.
func (c Config) Redacted() Config {
	c.RedisURL = redactURL(c.RedisURL)
	return c
}

// redactURL masks the password of a URL, so it never reaches a log line or
// the debug endpoint.
func redactURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// buildDebug serves pprof, the effective configuration and a dump of the
// cached rule sets on --debug-addr, which is loopback by default: these
// reveal internals and must not face the network.
func (a *App) buildDebug() {
	if a.debugLis == nil {
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /debug/config", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, a.cfg.Redacted())
	})
	mux.HandleFunc("GET /debug/rulesets", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, a.cache.Snapshot())
	})
	a.debugSrv = &http.Server{Handler: mux, ReadHeaderTimeout: a.cfg.ReadHeaderTimeout}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
