package redisstore

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Default ports used by ParseURL when an address has none.
const (
	defaultPort         = "6379"
	defaultSentinelPort = "26379"
)

// ParseURL turns a Redis URL into Options. The accepted forms are:
//
//	redis://[user:pass@]host[:port][/db]                    a single node
//	rediss://…                                              the same over TLS
//	redis+sentinel://[user:pass@]host[:port],host[:port]…/mastername[/db]
//	                                                        Sentinel; the hosts are
//	                                                        the sentinels
//	redis+cluster://[user:pass@]host[:port],host[:port]…   Redis Cluster seed nodes
//	rediss+sentinel://…, rediss+cluster://…                 the same over TLS
//
// The port defaults to 6379 (26379 for sentinels) and db to 0; a cluster
// has no db. user:pass are the data nodes' credentials (Username may be
// empty for requirepass); reserved characters in them must be
// percent-encoded. Optional query parameters:
//
//	key_prefix=corsd-eu:          Options.KeyPrefix
//	dial_timeout=500ms            Options.DialTimeout (a Go duration)
//	read_timeout=500ms            Options.ReadTimeout
//	write_timeout=500ms           Options.WriteTimeout
//	pool_size=20                  Options.PoolSize
//	sentinel_username=…           Options.SentinelUsername (sentinel only)
//	sentinel_password=…           Options.SentinelPassword (sentinel only)
//
// and, for the rediss forms only, the TLS settings (Options.TLS):
//
//	tls_ca_file=/etc/corsd/redis-ca.pem
//	                              a PEM bundle of the CA certificates that
//	                              the servers' certificates must chain to,
//	                              instead of the system's roots
//	tls_server_name=redis.internal
//	                              the name the servers' certificates must be
//	                              valid for, and the SNI sent, instead of
//	                              the host dialled; it applies to every node
//	                              and sentinel, so they must all share it
//	tls_cert_file=/etc/corsd/redis-client.pem
//	tls_key_file=/etc/corsd/redis-client-key.pem
//	                              a client certificate and its key (PEM),
//	                              presented to Redis (tls-auth-clients);
//	                              both or neither
//
// Paths are percent-encoded like any query value. ParseURL reads the files
// once: replacing them takes effect at the next ParseURL (a restart), and a
// missing, empty or invalid file is an error naming the parameter. Without
// tls_ca_file the system's roots are trusted and the certificate must be
// valid for the host dialled; there is no way to skip verification.
//
// Unknown parameters are rejected so a misspelt one is not silently
// ignored. Errors never repeat the URL, which may hold a password.
func ParseURL(rawURL string) (Options, error) {
	// net/url checks a host list's port only after the last colon, so
	// "h1:1,h2" would fail; the hosts are cut out and parsed here instead.
	hosts, rest, err := cutHosts(rawURL)
	if err != nil {
		return Options{}, err
	}
	u, err := url.Parse(rest)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // url.Error's message quotes the URL
		}
		return Options{}, fmt.Errorf("redisstore: invalid Redis URL: %w", err)
	}
	var opts Options
	kind, tlsOn := "", false
	switch u.Scheme {
	case "redis":
		kind = "single"
	case "rediss":
		kind, tlsOn = "single", true
	case "redis+sentinel":
		kind = "sentinel"
	case "rediss+sentinel":
		kind, tlsOn = "sentinel", true
	case "redis+cluster":
		kind = "cluster"
	case "rediss+cluster":
		kind, tlsOn = "cluster", true
	default:
		return Options{}, fmt.Errorf("redisstore: Redis URL scheme %q is not redis, rediss, redis+sentinel, redis+cluster or their rediss+ forms", u.Scheme)
	}
	if u.Opaque != "" || hosts == "" {
		return Options{}, errors.New("redisstore: Redis URL has no host")
	}
	if u.Fragment != "" {
		return Options{}, errors.New("redisstore: Redis URL must not have a #fragment")
	}
	if tlsOn {
		// ServerName is left empty unless tls_server_name sets it:
		// crypto/tls then takes it from each address dialled, which is right
		// for every node of a cluster or sentinel set.
		opts.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if u.User != nil {
		opts.Username = u.User.Username()
		opts.Password, _ = u.User.Password()
	}
	port := defaultPort
	if kind == "sentinel" {
		port = defaultSentinelPort
	}
	if opts.Addrs, err = parseHosts(hosts, port); err != nil {
		return Options{}, err
	}
	if kind == "single" && len(opts.Addrs) > 1 {
		return Options{}, fmt.Errorf("redisstore: %s:// takes one host; use %s+cluster:// or %s+sentinel:// for several", u.Scheme, u.Scheme, u.Scheme)
	}
	path := strings.Trim(u.Path, "/")
	var segs []string
	if path != "" {
		segs = strings.Split(path, "/")
	}
	switch kind {
	case "single":
		if len(segs) > 1 {
			return Options{}, fmt.Errorf("redisstore: Redis URL path %q is not /db", u.Path)
		}
	case "sentinel":
		if len(segs) == 0 || len(segs) > 2 || segs[0] == "" {
			return Options{}, errors.New("redisstore: redis+sentinel:// URL needs the master name as its path: /mastername[/db]")
		}
		opts.MasterName, segs = segs[0], segs[1:]
	case "cluster":
		opts.Cluster = true
		if len(segs) > 0 {
			return Options{}, errors.New("redisstore: redis+cluster:// URL takes no path: a cluster has only database 0")
		}
	}
	if len(segs) == 1 {
		db, err := strconv.Atoi(segs[0])
		if err != nil || db < 0 {
			return Options{}, fmt.Errorf("redisstore: Redis URL database %q is not a number >= 0", segs[0])
		}
		opts.DB = db
	}
	if err := parseQuery(u.RawQuery, kind, u.Scheme, &opts); err != nil {
		return Options{}, err
	}
	return opts, nil
}

// hostPlaceholder stands in for the host list when the rest of the URL is
// handed to net/url.
const hostPlaceholder = "hosts.invalid"

// cutHosts returns the URL's host list and the URL with the list replaced
// by hostPlaceholder.
func cutHosts(rawURL string) (hosts, rest string, err error) {
	scheme, after, ok := strings.Cut(rawURL, "://")
	if !ok {
		return "", "", errors.New("redisstore: Redis URL must start with a scheme such as redis://")
	}
	end := strings.IndexAny(after, "/?#")
	if end < 0 {
		end = len(after)
	}
	authority := after[:end]
	userinfo := ""
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		userinfo, authority = authority[:at+1], authority[at+1:]
	}
	return authority, scheme + "://" + userinfo + hostPlaceholder + after[end:], nil
}

// parseHosts splits a comma-separated host list, adding defaultPort where
// a host has none.
func parseHosts(hosts, defaultPort string) ([]string, error) {
	var addrs []string
	for h := range strings.SplitSeq(hosts, ",") {
		if h == "" {
			return nil, errors.New("redisstore: Redis URL has an empty host in its host list")
		}
		host, port, err := net.SplitHostPort(h)
		if err != nil {
			// No port: the whole thing is the host (an IPv6 literal must be
			// bracketed, so a bare "::1" is rejected below).
			host, port = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"), defaultPort
		}
		if host == "" || strings.ContainsAny(host, "[]/") || (strings.Contains(host, ":") && !strings.HasPrefix(h, "[")) {
			return nil, fmt.Errorf("redisstore: Redis URL host %q is not host[:port]", h)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("redisstore: Redis URL host %q has an invalid port", h)
		}
		addrs = append(addrs, net.JoinHostPort(host, port))
	}
	return addrs, nil
}

// tlsParams are the tls_* query parameters, applied after all the others
// are parsed because tls_cert_file and tls_key_file go together.
type tlsParams struct {
	caFile, serverName, certFile, keyFile string
}

func parseQuery(rawQuery, kind, scheme string, opts *Options) error {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return fmt.Errorf("redisstore: Redis URL query: %w", err)
	}
	var tp tlsParams
	for name, vals := range q {
		if len(vals) != 1 {
			return fmt.Errorf("redisstore: Redis URL parameter %s is given %d times", name, len(vals))
		}
		v := vals[0]
		switch name {
		case "key_prefix":
			opts.KeyPrefix = v
		case "dial_timeout":
			err = parseDuration(name, v, &opts.DialTimeout)
		case "read_timeout":
			err = parseDuration(name, v, &opts.ReadTimeout)
		case "write_timeout":
			err = parseDuration(name, v, &opts.WriteTimeout)
		case "pool_size":
			n, perr := strconv.Atoi(v)
			if perr != nil || n < 0 {
				err = fmt.Errorf("redisstore: Redis URL parameter pool_size=%q is not a number >= 0", v)
			}
			opts.PoolSize = n
		case "sentinel_username", "sentinel_password":
			if kind != "sentinel" {
				return fmt.Errorf("redisstore: Redis URL parameter %s needs a redis+sentinel:// URL", name)
			}
			if name == "sentinel_username" {
				opts.SentinelUsername = v
			} else {
				opts.SentinelPassword = v
			}
		case "tls_ca_file", "tls_server_name", "tls_cert_file", "tls_key_file":
			if opts.TLS == nil {
				return fmt.Errorf("redisstore: Redis URL parameter %s needs TLS: use rediss:// (or a rediss+ form) instead of %s://", name, scheme)
			}
			if v == "" {
				return fmt.Errorf("redisstore: Redis URL parameter %s is empty", name)
			}
			switch name {
			case "tls_ca_file":
				tp.caFile = v
			case "tls_server_name":
				tp.serverName = v
			case "tls_cert_file":
				tp.certFile = v
			case "tls_key_file":
				tp.keyFile = v
			}
		default:
			return fmt.Errorf("redisstore: unknown Redis URL parameter %q", name)
		}
		if err != nil {
			return err
		}
	}
	if opts.TLS != nil {
		return applyTLSParams(tp, opts.TLS)
	}
	return nil
}

// applyTLSParams loads the files tp names into cfg.
func applyTLSParams(tp tlsParams, cfg *tls.Config) error {
	cfg.ServerName = tp.serverName
	if tp.caFile != "" {
		pool, err := loadCAFile(tp.caFile)
		if err != nil {
			return err
		}
		cfg.RootCAs = pool
	}
	if (tp.certFile == "") != (tp.keyFile == "") {
		return errors.New("redisstore: Redis URL parameters tls_cert_file and tls_key_file go together: give both or neither")
	}
	if tp.certFile != "" {
		// tls.LoadX509KeyPair's errors name the problem, never the key.
		cert, err := tls.LoadX509KeyPair(tp.certFile, tp.keyFile)
		if err != nil {
			return fmt.Errorf("redisstore: Redis URL parameters tls_cert_file and tls_key_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return nil
}

// loadCAFile reads a PEM bundle of CA certificates. Unlike
// x509.CertPool.AppendCertsFromPEM it rejects a bundle with any block that
// is not a valid certificate, so a damaged or wrong file (a private key, a
// certificate cut short) is reported rather than half-used. Text between
// blocks, such as the comments of distribution bundles, is ignored.
func loadCAFile(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("redisstore: Redis URL parameter tls_ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("redisstore: Redis URL parameter tls_ca_file: %s holds a %q PEM block; a CA bundle holds only CERTIFICATE blocks", path, block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("redisstore: Redis URL parameter tls_ca_file: certificate %d in %s: %w", n+1, path, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("redisstore: Redis URL parameter tls_ca_file: %s holds no PEM certificate", path)
	}
	return pool, nil
}

func parseDuration(name, v string, dst *time.Duration) error {
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return fmt.Errorf("redisstore: Redis URL parameter %s=%q is not a positive duration such as 300ms", name, v)
	}
	*dst = d
	return nil
}
