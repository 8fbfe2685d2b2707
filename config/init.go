package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
)

// ErrExists is returned by Init when registry.toml exists and force is off.
var ErrExists = errors.New("configuration file already exists")

// Template returns a commented registry.toml with every key at its default.
func Template() string {
	d := Defaults()
	var buf bytes.Buffer
	if err := fileTemplate.Execute(&buf, d); err != nil {
		// The template and Config are both ours; a failure is a bug caught by
		// the tests, not a runtime condition.
		return "# template error: " + err.Error() + "\n"
	}
	return buf.String()
}

var fileTemplate = template.Must(template.New("registry.toml").Funcs(template.FuncMap{
	"q": strconv.Quote,
	"text": func(v interface{ MarshalText() ([]byte, error) }) string {
		b, _ := v.MarshalText()
		return strconv.Quote(string(b))
	},
	"list": func(l []string) string {
		q := make([]string, len(l))
		for i, s := range l {
			q[i] = strconv.Quote(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	},
}).Parse(`# moonbit-registry configuration.
# Every key is shown at its default. Each can also be set in the environment as
# MOONBIT_REGISTRY_<SECTION>_<KEY> (e.g. MOONBIT_REGISTRY_SERVER_LISTEN); flags
# beat the environment, which beats this file. Durations are strings such as
# "30s" or "5m". Relative paths resolve against the registry root (--dir),
# which is this file's directory unless --config names a file elsewhere.

[server]
# Address to listen on.
listen = {{q .Server.Listen}}
# URL clients are told to use (MOONCAKES_REGISTRY). Empty: http://<listen>.
base_url = {{q .Server.BaseURL}}
read_header_timeout = {{text .Server.ReadHeaderTimeout}}
read_timeout = {{text .Server.ReadTimeout}}
# "0s" means no limit: large archives to slow clients may take long.
write_timeout = {{text .Server.WriteTimeout}}
idle_timeout = {{text .Server.IdleTimeout}}
# How long in-flight requests may finish after SIGINT/SIGTERM.
shutdown_timeout = {{text .Server.ShutdownTimeout}}
# After SIGINT/SIGTERM, keep serving this long with /readyz answering 503, so a
# load balancer takes this replica out before it stops accepting connections.
drain_delay = {{text .Server.DrainDelay}}
# A clone that arrives before the index's first sync waits this long for it.
first_sync_wait = {{text .Server.FirstSyncWait}}
# Never contact upstream: serve what is cached, answer misses with 504.
offline = {{.Server.Offline}}
# Client authentication, for deployments outside a trusted network: when
# either list is non-empty every route but /healthz needs credentials.
# Bearer tokens ("Authorization: Bearer <token>", or as the password of
# http://any:<token>@host), stored as their SHA-256 hex digest: make one with
# "moonbit-registry auth new-token" or "... auth hash-token".
auth_tokens = {{list .Server.AuthTokens}}
# Basic-auth users as "name:bcrypt-hash" (htpasswd -nB writes this form too):
# "moonbit-registry auth hash-password --user NAME" reads the password on
# standard input. Never store plain-text secrets here.
auth_users = {{list .Server.AuthUsers}}
# Tokens that may publish, deprecate and yank private modules over HTTP (and
# read, when the lists above turn authentication on), as SHA-256 hex digests:
# "moonbit-registry auth new-token --publish". Empty: publishing over HTTP is
# off ("moonbit-registry publish" on this machine still works).
publish_tokens = {{list .Server.PublishTokens}}
# HTTPS: PEM certificate (chain) and private key, both or neither. With them
# base_url defaults to https://<listen>.
cert_file = {{q .Server.CertFile}}
key_file = {{q .Server.KeyFile}}

[upstream]
index_url = {{q .Upstream.IndexURL}}
download_url = {{q .Upstream.DownloadURL}}
api_url = {{q .Upstream.APIURL}}
# Upstream's firewall rejects requests without a mooncake/ user agent.
user_agent = {{q .Upstream.UserAgent}}
# Limit for one upstream request attempt.
timeout = {{text .Upstream.Timeout}}
# Retries after 5xx, 408, 429 or a connection error (never after 404).
retries = {{.Upstream.Retries}}

[index]
# Local git mirror of the index, served at <base_url>/git/index.
dir = {{q .Index.Dir}}
sync_interval = {{text .Index.SyncInterval}}
# While syncs keep failing this long, /readyz answers 503 ("0s": 3 sync intervals).
stale_after = {{text .Index.StaleAfter}}
branch = {{q .Index.Branch}}
git_timeout = {{text .Index.GitTimeout}}
# A client's clone or pull makes the registry look at upstream's tip (and sync
# first when it moved) when it last looked longer ago than this; "0s": never.
check_interval = {{text .Index.CheckInterval}}

[cache]
# Package archives, stored as <owner>/<name>/<version>.zip.
dir = {{q .Cache.Dir}}
# Cached upstream responses (symbols, assets, API).
http_dir = {{q .Cache.HTTPDir}}
# Size limit such as "20GiB"; "0" means unlimited.
max_size = {{text .Cache.MaxSize}}
# Upstream archive downloads running at once.
max_concurrent_fetches = {{.Cache.MaxConcurrentFetches}}
# The largest symbols.zip or asset kept; larger ones are passed on only.
max_passthrough_size = {{text .Cache.MaxPassthroughSize}}
# How long an upstream 404 (a missing asset, say) is remembered; "0s": never.
not_found_ttl = {{text .Cache.NotFoundTTL}}

[store]
# Where archives are kept: "local" (cache.dir on this machine) or "s3" (one
# bucket shared by every replica; credentials from AWS_ACCESS_KEY_ID and
# AWS_SECRET_ACCESS_KEY or the shared credentials file, never from here).
backend = {{q .Store.Backend}}

[store.s3]
# The S3 server's URL ("" is AWS S3; http:// is allowed), and the bucket,
# which must exist.
endpoint = {{q .Store.S3.Endpoint}}
bucket = {{q .Store.S3.Bucket}}
# Key prefix, e.g. "registry/", so the bucket can hold other data too.
prefix = {{q .Store.S3.Prefix}}
# "" takes AWS_REGION, or us-east-1.
region = {{q .Store.S3.Region}}
# true for most self-hosted servers (MinIO, versitygw, SeaweedFS, Ceph).
path_style = {{.Store.S3.PathStyle}}
# A replica fetching an archive for the fleet renews its lease every third
# of this; one not renewed this long (the replica died) is taken over.
lease_ttl = {{text .Store.S3.LeaseTTL}}
# true: archive requests are answered with a redirect to a signed URL of the
# bucket (valid 15 minutes); only where clients can reach the store.
redirect = {{.Store.S3.Redirect}}

[mirror]
# Patterns a bare "moonbit-registry mirror" fetches, e.g. ["moonbitlang/*"].
packages = {{list .Mirror.Packages}}
concurrency = {{.Mirror.Concurrency}}

[private]
# Owners reserved for this team's own modules, e.g. ["acme"]: only they can
# be published here, and upstream's modules under them are never served.
owners = {{list .Private.Owners}}
# Private index lines with store.backend = "local" (with "s3" they are kept
# in the bucket).
dir = {{q .Private.Dir}}
# The largest archive "publish" takes.
max_archive_size = {{text .Private.MaxArchiveSize}}

# Further registries, each serving the modules of some owners (one table
# each; an owner comes from one source). A table without owners serves
# everything else instead of [upstream]. Credentials come from the
# environment variable a table names, never from this file.
# [[sources]]
# name = "central"
# index_url = "https://registry.corp.example/git/index"
# download_url = "https://registry.corp.example"
# owners = ["corp"]
# token_env = "CENTRAL_TOKEN"    # or basic_env = "VAR" holding user:password
`))

// InitResult says what Init did.
type InitResult struct {
	File        string
	Overwritten bool
	Dirs        []string
}

// Init lays out a registry root: a commented registry.toml with defaults and
// the data/index and data/packages directories. An existing registry.toml is
// kept unless force is set (ErrExists); the directories are created if
// missing, so running it twice is harmless.
func Init(root string, force bool) (InitResult, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return InitResult{}, fmt.Errorf("registry root: %w", err)
	}
	res := InitResult{File: filepath.Join(root, FileName)}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return res, fmt.Errorf("create registry root: %w", err)
	}
	_, err = os.Lstat(res.File)
	switch {
	case err == nil && !force:
		return res, fmt.Errorf("%s: %w (use --force to overwrite)", res.File, ErrExists)
	case err == nil:
		res.Overwritten = true
	case !errors.Is(err, fs.ErrNotExist):
		return res, fmt.Errorf("check %s: %w", res.File, err)
	}
	d := Defaults()
	for _, dir := range []string{d.Index.Dir, d.Cache.Dir} {
		p := filepath.Join(root, dir)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return res, fmt.Errorf("create %s: %w", p, err)
		}
		res.Dirs = append(res.Dirs, p)
	}
	if err := writeFileAtomic(res.File, []byte(Template()), 0o644); err != nil {
		return res, err
	}
	return res, nil
}

// writeFileAtomic writes a temp file beside path, syncs it and renames it
// over path, so a reader sees the old file or the new one, never half.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
