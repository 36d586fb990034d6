package redisstore

import (
	"crypto/tls"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseURLAcceptsTheDocumentedForms(t *testing.T) {
	tlsOn := &tls.Config{MinVersion: tls.VersionTLS12}
	tests := []struct {
		url  string
		want Options
	}{
		{"redis://localhost", Options{Addrs: []string{"localhost:6379"}}},
		{"redis://10.0.0.1:6380/", Options{Addrs: []string{"10.0.0.1:6380"}}},
		{"redis://user:s%40cret@redis.internal:6380/2", Options{Addrs: []string{"redis.internal:6380"}, Username: "user", Password: "s@cret", DB: 2}},
		{"redis://:pw@h:1", Options{Addrs: []string{"h:1"}, Password: "pw"}},
		{"redis://[::1]:7000/1", Options{Addrs: []string{"[::1]:7000"}, DB: 1}},
		{"redis://[::1]", Options{Addrs: []string{"[::1]:6379"}}},
		{"rediss://cache.example.com:6380", Options{Addrs: []string{"cache.example.com:6380"}, TLS: tlsOn}},
		{"redis+sentinel://s1:26379,s2,s3:26380/mymaster", Options{Addrs: []string{"s1:26379", "s2:26379", "s3:26380"}, MasterName: "mymaster"}},
		{"redis+sentinel://u:p@s1/mymaster/3?sentinel_username=su&sentinel_password=sp",
			Options{Addrs: []string{"s1:26379"}, MasterName: "mymaster", DB: 3, Username: "u", Password: "p", SentinelUsername: "su", SentinelPassword: "sp"}},
		{"rediss+sentinel://s1/m", Options{Addrs: []string{"s1:26379"}, MasterName: "m", TLS: tlsOn}},
		{"redis+cluster://n1:7000,n2:7001,n3", Options{Addrs: []string{"n1:7000", "n2:7001", "n3:6379"}, Cluster: true}},
		{"redis+cluster://cfg.example.com:6379", Options{Addrs: []string{"cfg.example.com:6379"}, Cluster: true}},
		{"rediss+cluster://u:p@n1:7000/", Options{Addrs: []string{"n1:7000"}, Cluster: true, Username: "u", Password: "p", TLS: tlsOn}},
		{"redis://h?key_prefix=corsd-eu:&dial_timeout=1s&read_timeout=250ms&write_timeout=2s&pool_size=20",
			Options{Addrs: []string{"h:6379"}, KeyPrefix: "corsd-eu:", DialTimeout: time.Second, ReadTimeout: 250 * time.Millisecond, WriteTimeout: 2 * time.Second, PoolSize: 20}},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			got, err := ParseURL(tt.url)
			if err != nil {
				t.Fatalf("ParseURL: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseURL =\n %+v\nwant\n %+v", got, tt.want)
			}
		})
	}
}

func TestParseURLRejectsMalformedURLsWithoutLeakingThePassword(t *testing.T) {
	tests := []struct {
		name, url, wantInErr string
	}{
		{"unknown scheme", "http://u:hunter2@h", "scheme"},
		{"no host", "redis://", "no host"},
		{"several hosts for one node", "redis://u:hunter2@h1,h2", "one host"},
		{"bad db", "redis://u:hunter2@h/zero", "database"},
		{"negative db", "redis://h/-1", "database"},
		{"path too deep", "redis://h/1/2", "not /db"},
		{"sentinel without master", "redis+sentinel://u:hunter2@s1", "master name"},
		{"sentinel path too deep", "redis+sentinel://s1/m/1/2", "master name"},
		{"cluster with db", "redis+cluster://n1/1", "database 0"},
		{"bad port", "redis://u:hunter2@h:99999", "port"},
		{"empty host in list", "redis+cluster://n1,,n2", "empty host"},
		{"unbracketed ipv6", "redis+cluster://n1,::1", "not host[:port]"},
		{"unknown parameter", "redis://u:hunter2@h?readtimeout=1s", "unknown"},
		{"bad duration", "redis://h?dial_timeout=fast", "dial_timeout"},
		{"zero duration", "redis://h?read_timeout=0s", "read_timeout"},
		{"bad pool size", "redis://h?pool_size=-2", "pool_size"},
		{"repeated parameter", "redis://h?pool_size=1&pool_size=2", "2 times"},
		{"sentinel parameter without sentinel", "redis://h?sentinel_password=hunter2", "redis+sentinel"},
		{"fragment", "redis://h#x", "fragment"},
		{"unparsable", "redis://u:hunter2@h:port:x/%zz", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseURL(tt.url)
			if err == nil {
				t.Fatalf("ParseURL(%q) = %+v, want an error", tt.url, got)
			}
			if !strings.Contains(err.Error(), tt.wantInErr) {
				t.Errorf("error %q does not mention %q", err, tt.wantInErr)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q repeats the password", err)
			}
		})
	}
}
