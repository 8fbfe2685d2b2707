package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"moonbit-registry/config"
	"moonbit-registry/manifest"
	"moonbit-registry/module"
	"moonbit-registry/private"
)

// PublishTarget is where publish, deprecate and yank go: the registry root
// itself (Server empty), or a running server with a publish token.
type PublishTarget struct {
	Server string
	Token  string
}

// TokenEnv is the environment variable the commands read the publish
// token from.
const TokenEnv = "MOONBIT_REGISTRY_TOKEN"

// Publish publishes the module at path (a zip from `moon package`, or a
// module directory that moon package has packaged) and says what it did on
// out.
func Publish(ctx context.Context, cfg config.Config, log zerolog.Logger, target PublishTarget, path string, out io.Writer) error {
	archive, err := archiveFor(ctx, path, out)
	if err != nil {
		return err
	}
	f, err := os.Open(archive)
	if err != nil {
		return UsageError{err}
	}
	defer f.Close()
	var p private.Published
	if target.Server != "" {
		p, err = publishRemote(ctx, target, f)
	} else {
		err = withPrivate(cfg, log, func(reg *private.Registry) error {
			var err error
			p, err = reg.Publish(ctx, f)
			return err
		})
	}
	if err != nil {
		return err
	}
	if p.Existed {
		fmt.Fprintf(out, "%s was published before with the same bytes (sha256 %s); nothing changed\n", p.Archive, p.Checksum)
	} else {
		fmt.Fprintf(out, "published %s (sha256 %s)\n", p.Archive, p.Checksum)
	}
	return nil
}

// Mark deprecates, yanks or restores a published private version.
func Mark(ctx context.Context, cfg config.Config, log zerolog.Logger, target PublishTarget, spec string, m private.Mark, out io.Writer) error {
	mv, err := module.ParseVersion(spec)
	if err != nil {
		return UsageError{fmt.Errorf("%w (want owner/name@version)", err)}
	}
	if target.Server != "" {
		err = markRemote(ctx, target, mv, m)
	} else {
		err = withPrivate(cfg, log, func(reg *private.Registry) error { return reg.SetMarks(ctx, mv, m) })
	}
	if err != nil {
		return err
	}
	switch {
	case m.Deprecated != nil && *m.Deprecated == "":
		fmt.Fprintf(out, "%s is no longer deprecated\n", mv)
	case m.Deprecated != nil:
		fmt.Fprintf(out, "%s is deprecated: %s\n", mv, *m.Deprecated)
	case m.Yanked != nil && *m.Yanked:
		fmt.Fprintf(out, "%s is yanked (its archive stays for those who locked it)\n", mv)
	case m.Yanked != nil:
		fmt.Fprintf(out, "%s is no longer yanked\n", mv)
	}
	return nil
}

// withPrivate opens the registry root for a local change.
func withPrivate(cfg config.Config, log zerolog.Logger, fn func(*private.Registry) error) error {
	if len(cfg.Private.Owners) == 0 {
		return errors.New("this registry takes no private modules: set [private] owners in registry.toml")
	}
	r, err := openIndex(cfg, Use{}, log)
	if err != nil {
		return err
	}
	defer r.Close()
	return fn(r.Private)
}

// archiveFor finds the archive to publish: path itself when it is a file,
// else the one `moon package` writes for the module directory at path
// (_build/publish/<owner>-<name>-<version>.zip), running moon package
// when it is missing and moon is installed.
func archiveFor(ctx context.Context, path string, out io.Writer) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", UsageError{err}
	}
	if !fi.IsDir() {
		return path, nil
	}
	man, _, err := manifest.ReadDir(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", UsageError{fmt.Errorf("%s is not a module directory: %w", path, err)}
	}
	if err != nil {
		return "", UsageError{err}
	}
	if man.Version == "" {
		return "", UsageError{fmt.Errorf("the manifest in %s has no version; a published module needs one", path)}
	}
	name := strings.ReplaceAll(man.Name, "/", "-") + "-" + man.Version + ".zip"
	archive := filepath.Join(path, "_build", "publish", name)
	if _, err := os.Stat(archive); err == nil {
		return archive, nil
	}
	moon, err := exec.LookPath("moon")
	if err != nil {
		return "", UsageError{fmt.Errorf("%s does not exist and moon is not installed: run `moon package` in %s, or give the zip", archive, path)}
	}
	fmt.Fprintf(out, "running moon package in %s\n", path)
	cmd := exec.CommandContext(ctx, moon, "package")
	cmd.Dir = path
	cmd.Stdout, cmd.Stderr = out, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("moon package in %s: %w", path, err)
	}
	if _, err := os.Stat(archive); err != nil {
		return "", fmt.Errorf("moon package did not write %s: %w", archive, err)
	}
	return archive, nil
}

// remoteTimeout bounds one request of the publish commands.
const remoteTimeout = 5 * time.Minute

func publishRemote(ctx context.Context, target PublishTarget, body io.Reader) (private.Published, error) {
	var ans private.Published
	if err := callRemote(ctx, target, "publish", "application/zip", body, &ans); err != nil {
		return private.Published{}, err
	}
	return ans, nil
}

func markRemote(ctx context.Context, target PublishTarget, mv module.Version, m private.Mark) error {
	route := "deprecate"
	req := map[string]any{"name": mv.Module, "version": mv.Version}
	if m.Deprecated != nil {
		req["reason"] = *m.Deprecated
	} else {
		route = "yank"
		req["yanked"] = m.Yanked != nil && *m.Yanked
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	return callRemote(ctx, target, route, "application/json", bytes.NewReader(body), nil)
}

// callRemote POSTs body to the server's write API route and decodes the
// JSON answer into ans; a refusal comes back as the server's message.
func callRemote(ctx context.Context, target PublishTarget, route, contentType string, body io.Reader, ans any) error {
	if target.Token == "" {
		return UsageError{fmt.Errorf("--server needs a publish token in %s", TokenEnv)}
	}
	ctx, cancel := context.WithTimeout(ctx, remoteTimeout)
	defer cancel()
	url := strings.TrimRight(target.Server, "/") + "/-/api/" + route
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, body)
	if err != nil {
		return UsageError{fmt.Errorf("--server %q: %w", target.Server, err)}
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+target.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s: reading the answer: %w", url, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct{ Error string }
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s refused (%s): %s", target.Server, resp.Status, e.Error)
		}
		return fmt.Errorf("%s answered %s: %.300s", url, resp.Status, data)
	}
	if ans == nil {
		return nil
	}
	if err := json.Unmarshal(data, ans); err != nil {
		return fmt.Errorf("%s: unexpected answer: %w", url, err)
	}
	return nil
}
