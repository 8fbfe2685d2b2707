// Package s3 is the archive store on an S3-compatible object store (AWS S3,
// MinIO, versitygw, SeaweedFS, Ceph), shared by every replica of a
// registry. An archive is one object, published by one streaming PUT that
// carries the index checksum (x-amz-checksum-sha256) and a condition
// (If-None-Match: *, or If-Match on the object it replaces): the server
// refuses wrong or cut bodies, so nothing unverified is ever visible, and
// replicas racing to publish the same archive end with one object.
package s3

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"moonbit-registry/module"
	"moonbit-registry/store"
)

// Options configures New: the [store.s3] table of registry.toml.
type Options struct {
	// Endpoint is the server's URL (http:// allowed); "" is AWS's own.
	Endpoint string
	Bucket   string
	// Prefix is prepended to every key ("" or ending in "/"), so one
	// bucket can hold several registries or other data.
	Prefix string
	// Region is the bucket's region; "" takes it from the AWS environment
	// or configuration files, else "us-east-1".
	Region string
	// PathStyle addresses the bucket in the path (http://host/bucket/key),
	// as most self-hosted servers need.
	PathStyle bool
	// TempDir holds archives of unknown length until they are uploaded;
	// "" is the system's.
	TempDir string
	// Observe, if set, sees every request to the server: the operation
	// ("get", "put", "head", "list", "delete", "ping"), its time, and its
	// error (metrics).
	Observe func(op string, d time.Duration, err error)
}

// metaSHA256 is the user metadata key (x-amz-meta-sha256) holding an
// archive's checksum in hex, readable on every server whether or not it
// reports stored checksums.
const metaSHA256 = "sha256"

// Store is the S3 archive store. It is safe for concurrent use.
type Store struct {
	client  *s3.Client
	bucket  string
	prefix  string
	tmp     string
	where   string // "bucket b at endpoint e", for errors
	observe func(op string, d time.Duration, err error)
	presign *s3.PresignClient // built once: presigning is per request
}

// track reports one request to Observe.
func (s *Store) track(op string, start time.Time, err error) {
	if s.observe != nil {
		if isNotFound(err) || httpStatus(err) == http.StatusPreconditionFailed {
			err = nil // answers, not failures
		}
		s.observe(op, time.Since(start), err)
	}
}

// ErrNoCredentials: the AWS SDK found no credentials for the bucket.
var ErrNoCredentials = errors.New("s3 store: no AWS credentials found")

// credentialsTimeout bounds the SDK's search for credentials (the
// metadata services it may ask answer within a second where they exist).
const credentialsTimeout = 10 * time.Second

// firstLine is s's first line, at most n bytes.
func firstLine(s string, n int) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > n {
		s = strings.ToValidUTF8(s[:n], "") + "..."
	}
	return s
}

// New connects to the bucket. Credentials come from the standard AWS
// environment variables or the shared credentials file, never from the
// registry's configuration. A bucket that does not exist, or credentials
// it refuses, is an error naming the endpoint and the bucket.
func New(ctx context.Context, opts Options) (*Store, error) {
	if opts.Bucket == "" {
		return nil, errors.New("s3 store: store.s3.bucket is required")
	}
	if opts.Prefix != "" && !strings.HasSuffix(opts.Prefix, "/") {
		opts.Prefix += "/"
	}
	loadOpts := []func(*config.LoadOptions) error{}
	if opts.Region != "" {
		loadOpts = append(loadOpts, config.WithRegion(opts.Region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("s3 store: AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	// Without credentials every request would fail with the SDK's chain of
	// every place it looked (the EC2 metadata service last): say up front
	// what to set.
	credCtx, cancel := context.WithTimeout(ctx, credentialsTimeout)
	_, err = cfg.Credentials.Retrieve(credCtx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("%w: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE naming a profile "+
			"of the shared credentials file (or run where an instance or container role provides them); the SDK said: %s",
			ErrNoCredentials, firstLine(err.Error(), 200))
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
		}
		o.UsePathStyle = opts.PathStyle
		// Checksums are ours (the index's SHA-256, sent with each PUT);
		// the SDK adds none of its own and does not expect any back.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		// Bodies stream from upstream and cannot be read twice to sign
		// them: the payload goes unsigned (the checksum header covers it).
		o.APIOptions = append(o.APIOptions, v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)
	})
	endpoint := opts.Endpoint
	if endpoint == "" {
		endpoint = "AWS S3 (" + cfg.Region + ")"
	}
	s := &Store{
		client:  client,
		bucket:  opts.Bucket,
		prefix:  opts.Prefix,
		tmp:     opts.TempDir,
		where:   fmt.Sprintf("bucket %q at %s", opts.Bucket, endpoint),
		observe: opts.Observe,
		presign: s3.NewPresignClient(client),
	}
	if err := s.Ping(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// archivePrefix is where archives live: <prefix>packages/<module>/<version>.zip.
func (s *Store) archivePrefix() string { return s.prefix + "packages/" }

func (s *Store) key(mv module.Version) string {
	return s.archivePrefix() + mv.Module + "/" + mv.Version + ".zip"
}

// Ping checks that the bucket is there and the credentials are accepted.
func (s *Store) Ping(ctx context.Context) error {
	start := time.Now()
	_, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.bucket)})
	s.track("ping", start, err)
	if err == nil {
		return nil
	}
	switch status := httpStatus(err); {
	case status == http.StatusNotFound:
		return fmt.Errorf("s3 store: %s does not exist (create it first): %w", s.where, store.ErrWrite)
	case status == http.StatusForbidden || status == http.StatusUnauthorized:
		return fmt.Errorf("s3 store: %s refuses the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the shared credentials file): %w", s.where, store.ErrWrite)
	}
	return fmt.Errorf("s3 store: %s: %w: %w", s.where, err, store.ErrWrite)
}

// Open starts reading an archive: one GET, whose headers give its size,
// date and checksum. Seeking is lazy: a later Read after a Seek asks for
// the range from there.
func (s *Store) Open(ctx context.Context, mv module.Version) (store.Object, error) {
	if err := mv.Validate(); err != nil {
		return nil, err
	}
	key := s.key(mv)
	start := time.Now()
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
	s.track("get", start, err)
	if err != nil {
		if isNotFound(err) {
			return nil, fmt.Errorf("%s: %w", mv, store.ErrNotExist)
		}
		return nil, fmt.Errorf("s3 store: get %s: %w: %w", mv, store.ErrUnavailable, err)
	}
	size := aws.ToInt64(out.ContentLength)
	return &object{
		s: s, ctx: ctx, key: key, etag: aws.ToString(out.ETag), body: out.Body,
		info: store.Info{Size: size, ModTime: aws.ToTime(out.LastModified), SHA256: out.Metadata[metaSHA256]},
	}, nil
}

// object is an open archive: the body of a GET, re-requested from an
// offset when a Read follows a Seek elsewhere.
type object struct {
	s    *Store
	ctx  context.Context
	key  string
	etag string
	info store.Info
	body io.ReadCloser // the open stream, at bodyPos; nil once closed
	// pos is where the next Read reads; bodyPos where body is.
	pos, bodyPos int64
}

func (o *object) Info() store.Info { return o.info }

func (o *object) Read(p []byte) (int, error) {
	if o.pos >= o.info.Size {
		return 0, io.EOF
	}
	if o.body != nil && o.bodyPos != o.pos {
		o.body.Close()
		o.body = nil
	}
	if o.body == nil {
		start := time.Now()
		out, err := o.s.client.GetObject(o.ctx, &s3.GetObjectInput{
			Bucket: aws.String(o.s.bucket), Key: aws.String(o.key),
			Range:   aws.String(fmt.Sprintf("bytes=%d-", o.pos)),
			IfMatch: aws.String(o.etag), // the same object, not one that replaced it
		})
		o.s.track("get", start, err)
		if err != nil {
			return 0, fmt.Errorf("s3 store: get %s from %d: %w: %w", o.key, o.pos, store.ErrUnavailable, err)
		}
		o.body, o.bodyPos = out.Body, o.pos
	}
	n, err := o.body.Read(p)
	o.pos += int64(n)
	o.bodyPos += int64(n)
	return n, err
}

// Seek only moves the read position: http.ServeContent's size probe (Seek
// to the end and back) costs no request, and the first GET's body serves
// a read from the start.
func (o *object) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = o.pos + offset
	case io.SeekEnd:
		abs = o.info.Size + offset
	default:
		return 0, errors.New("s3 store: bad whence")
	}
	if abs < 0 {
		return 0, errors.New("s3 store: negative position")
	}
	o.pos = abs
	return abs, nil
}

func (o *object) Close() error {
	if o.body == nil {
		return nil
	}
	err := o.body.Close()
	o.body = nil
	return err
}

// Create starts publishing an archive. Of a known length, the bytes stream
// to the server as they come, all but the last one, which Commit sends:
// the server cannot complete the object before Commit, and Abort leaves it
// incomplete, so refused. Of unknown length, they are spooled to a
// temporary file and sent at Commit.
func (s *Store) Create(ctx context.Context, mv module.Version, meta store.Meta) (store.Writer, error) {
	if err := mv.Validate(); err != nil {
		return nil, err
	}
	sum, err := hex.DecodeString(meta.SHA256)
	if err != nil || len(sum) != 32 {
		return nil, fmt.Errorf("s3 store: checksum %q is not a hex SHA-256", meta.SHA256)
	}
	w := &writer{s: s, ctx: ctx, mv: mv, meta: meta, checksum: base64.StdEncoding.EncodeToString(sum)}
	if meta.Size < 0 {
		f, err := os.CreateTemp(s.tmp, "s3-put-*.part")
		if err != nil {
			return nil, fmt.Errorf("s3 store: spool %s: %w: %w", mv, err, store.ErrWrite)
		}
		os.Remove(f.Name()) // unlinked: nothing to clean up after a crash
		w.spool = f
	}
	return w, nil
}

type writer struct {
	s        *Store
	ctx      context.Context
	mv       module.Version
	meta     store.Meta
	checksum string // base64, as x-amz-checksum-sha256 wants it

	spool *os.File // unknown length

	// known length: the PUT runs in its own goroutine reading pr.
	pw      *io.PipeWriter
	cancel  context.CancelFunc // stops the PUT
	result  chan error
	written int64
	last    []byte // held back until Commit

	done bool
}

var errAborted = errors.New("s3 store: write aborted")

func (w *writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, errors.New("s3 store: write after commit or abort")
	}
	if w.spool != nil {
		n, err := w.spool.Write(p)
		if err != nil {
			return n, fmt.Errorf("s3 store: spool %s: %w: %w", w.mv, err, store.ErrWrite)
		}
		return n, nil
	}
	if w.written+int64(len(p)) > w.meta.Size {
		return 0, fmt.Errorf("s3 store: %s: more than the announced %d bytes", w.mv, w.meta.Size)
	}
	if w.pw == nil {
		w.start(nil)
	}
	send := p
	if w.written+int64(len(p)) == w.meta.Size && len(p) > 0 {
		send, w.last = p[:len(p)-1], []byte{p[len(p)-1]}
	}
	if _, err := w.pw.Write(send); err != nil {
		return 0, fmt.Errorf("s3 store: put %s: %w", w.mv, w.putError(err))
	}
	w.written += int64(len(p))
	return len(p), nil
}

// start runs the PUT of a known length, reading the pipe (or body, when
// given whole).
func (w *writer) start(body io.Reader) {
	pr, pw := io.Pipe()
	w.pw = pw
	w.result = make(chan error, 1)
	ctx, cancel := context.WithCancel(w.ctx)
	w.cancel = cancel
	if body == nil {
		body = pr
	} else {
		pr.Close()
	}
	go func() {
		// Not the *io.PipeReader itself: the SDK sends that chunked, without
		// the Content-Length it signed.
		err := w.s.put(ctx, w.mv, w.meta.SHA256, w.checksum, struct{ io.Reader }{body}, w.meta.Size)
		cancel()
		pr.CloseWithError(err) // unblocks a writer whose PUT failed early
		w.result <- err
	}()
}

// putError is the PUT's own error when the pipe broke because it failed.
func (w *writer) putError(pipeErr error) error {
	select {
	case err := <-w.result:
		w.result <- err // Commit or Abort read it again
		if err != nil {
			return err
		}
	default:
	}
	return pipeErr
}

func (w *writer) Commit(ctx context.Context) error {
	if w.done {
		return errors.New("s3 store: commit after commit or abort")
	}
	w.done = true
	if w.spool != nil {
		defer w.spool.Close()
		size, err := w.spool.Seek(0, io.SeekEnd)
		if err != nil {
			return fmt.Errorf("s3 store: spool %s: %w: %w", w.mv, err, store.ErrWrite)
		}
		if _, err := w.spool.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("s3 store: spool %s: %w: %w", w.mv, err, store.ErrWrite)
		}
		return w.s.put(ctx, w.mv, w.meta.SHA256, w.checksum, w.spool, size)
	}
	if w.written != w.meta.Size {
		w.abort()
		return fmt.Errorf("s3 store: %s: %d bytes written, announced %d", w.mv, w.written, w.meta.Size)
	}
	if w.pw == nil { // an empty archive
		w.start(bytes.NewReader(nil))
	} else if _, err := w.pw.Write(w.last); err != nil {
		return fmt.Errorf("s3 store: put %s: %w", w.mv, w.putError(err))
	}
	w.pw.Close()
	select {
	case err := <-w.result:
		return err
	case <-ctx.Done():
		w.cancel()
		<-w.result
		return fmt.Errorf("s3 store: put %s: %w", w.mv, ctx.Err())
	}
}

func (w *writer) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	w.abort()
	return nil
}

// abort breaks the upload off before its last byte: the server completes
// nothing.
func (w *writer) abort() {
	if w.spool != nil {
		w.spool.Close()
		return
	}
	if w.pw != nil {
		w.pw.CloseWithError(errAborted)
		<-w.result
	}
}

// put publishes body as mv's archive, conditionally: If-None-Match: * when
// there is none, If-Match on the one there when that holds other bytes (the
// index changed the version's checksum). Another replica that published
// the same verified bytes first (412 with our checksum there) is success.
func (s *Store) put(ctx context.Context, mv module.Version, hexSum, checksum string, body io.Reader, size int64) error {
	key := s.key(mv)
	in := &s3.PutObjectInput{
		Bucket:         aws.String(s.bucket),
		Key:            aws.String(key),
		Body:           body,
		ContentLength:  aws.Int64(size),
		ContentType:    aws.String("application/zip"),
		ChecksumSHA256: aws.String(checksum),
		Metadata:       map[string]string{metaSHA256: hexSum},
	}
	existing, etag, err := s.head(ctx, key)
	switch {
	case err != nil && !isNotFound(err):
		return fmt.Errorf("s3 store: put %s: %w: %w", mv, err, store.ErrWrite)
	case err != nil:
		in.IfNoneMatch = aws.String("*")
	case existing.SHA256 == hexSum:
		drain(body)
		return nil // already there, the same verified bytes
	default:
		in.IfMatch = aws.String(etag)
	}
	start := time.Now()
	_, err = s.client.PutObject(ctx, in, func(o *s3.Options) {
		if _, seekable := body.(io.Seeker); !seekable {
			o.RetryMaxAttempts = 1 // a stream cannot be sent twice; the pipeline retries the fetch
		}
	})
	s.track("put", start, err)
	if err == nil {
		return nil
	}
	if httpStatus(err) == http.StatusPreconditionFailed || httpStatus(err) == http.StatusConflict {
		// Someone else wrote first (or is writing): fine if it is what we
		// would have written.
		if now, herr := s.waitFor(ctx, key); herr == nil && now.SHA256 == hexSum {
			drain(body) // a server may answer before reading it all
			return nil
		}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("s3 store: put %s: %w", mv, ctx.Err())
	}
	if isChecksumRefusal(err) {
		return fmt.Errorf("s3 store: %s refused the bytes of %s: they do not match the checksum: %w", s.where, mv, store.ErrChecksumMismatch)
	}
	return fmt.Errorf("s3 store: put %s: %w: %w", mv, err, store.ErrWrite)
}

// drain reads the rest of a body nobody will upload, so the writer side of
// a pipe is not left blocked.
func drain(r io.Reader) { io.Copy(io.Discard, r) }

// head describes the object at key, and gives its ETag.
func (s *Store) head(ctx context.Context, key string) (info store.Info, etag string, err error) {
	start := time.Now()
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
	s.track("head", start, err)
	if err != nil {
		return store.Info{}, "", err
	}
	return store.Info{Size: aws.ToInt64(out.ContentLength), ModTime: aws.ToTime(out.LastModified), SHA256: out.Metadata[metaSHA256]},
		aws.ToString(out.ETag), nil
}

// waitFor heads key until it exists, for a few seconds at most: after a
// 409 another upload of it is still finishing.
func (s *Store) waitFor(ctx context.Context, key string) (store.Info, error) {
	delay := 50 * time.Millisecond
	for range 8 {
		info, _, err := s.head(ctx, key)
		if err == nil || !isNotFound(err) {
			return info, err
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return store.Info{}, ctx.Err()
		}
		delay *= 2
	}
	return store.Info{}, fmt.Errorf("s3 store: %s did not appear", key)
}

// PresignExpiry is how long a signed download URL works.
const PresignExpiry = 15 * time.Minute

// PresignGet returns a URL that downloads mv's archive straight from the
// bucket for PresignExpiry, for clients that can reach the store.
func (s *Store) PresignGet(ctx context.Context, mv module.Version) (string, error) {
	if err := mv.Validate(); err != nil {
		return "", err
	}
	req, err := s.presign.PresignGetObject(ctx,
		&s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.key(mv))},
		s3.WithPresignExpires(PresignExpiry))
	if err != nil {
		return "", fmt.Errorf("s3 store: presign %s: %w", mv, err)
	}
	return req.URL, nil
}

// Stat describes mv's archive with one HEAD (store.Statter); a missing
// one is ErrNotExist.
func (s *Store) Stat(ctx context.Context, mv module.Version) (store.Info, error) {
	if err := mv.Validate(); err != nil {
		return store.Info{}, err
	}
	info, _, err := s.head(ctx, s.key(mv))
	if isNotFound(err) {
		return store.Info{}, fmt.Errorf("%s: %w", mv, store.ErrNotExist)
	}
	if err != nil {
		return store.Info{}, fmt.Errorf("s3 store: head %s: %w: %w", mv, store.ErrUnavailable, err)
	}
	return info, nil
}

// Has reports whether the bucket holds mv's archive (one HEAD).
func (s *Store) Has(ctx context.Context, mv module.Version) (bool, error) {
	_, err := s.Stat(ctx, mv)
	if errors.Is(err, store.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// Delete removes an archive; a missing one is ErrNotExist.
func (s *Store) Delete(ctx context.Context, mv module.Version) error {
	if err := mv.Validate(); err != nil {
		return err
	}
	key := s.key(mv)
	if _, _, err := s.head(ctx, key); err != nil {
		if isNotFound(err) {
			return fmt.Errorf("%s: %w", mv, store.ErrNotExist)
		}
		return fmt.Errorf("s3 store: delete %s: %w", mv, err)
	}
	start := time.Now()
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
	s.track("delete", start, err)
	if err != nil {
		return fmt.Errorf("s3 store: delete %s: %w: %w", mv, err, store.ErrWrite)
	}
	return nil
}

// Walk lists every archive under the prefix; other keys are skipped.
func (s *Store) Walk(ctx context.Context, fn func(module.Version) error) error {
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: aws.String(s.bucket), Prefix: aws.String(s.archivePrefix())})
	for p.HasMorePages() {
		start := time.Now()
		page, err := p.NextPage(ctx)
		s.track("list", start, err)
		if err != nil {
			return fmt.Errorf("s3 store: list %s: %w", s.where, err)
		}
		for _, obj := range page.Contents {
			mv, ok := s.parseKey(aws.ToString(obj.Key))
			if !ok {
				continue
			}
			if err := fn(mv); err != nil {
				return err
			}
		}
	}
	return nil
}

// parseKey is the inverse of key, for names that pass the grammar.
func (s *Store) parseKey(key string) (module.Version, bool) {
	rest, ok := strings.CutPrefix(key, s.archivePrefix())
	if !ok || !strings.HasSuffix(rest, ".zip") {
		return module.Version{}, false
	}
	rest = strings.TrimSuffix(rest, ".zip")
	i := strings.LastIndexByte(rest, '/')
	if i < 0 {
		return module.Version{}, false
	}
	mv := module.Version{Module: rest[:i], Version: rest[i+1:]}
	return mv, mv.Validate() == nil
}

// httpStatus is the HTTP status of a failed S3 call, 0 when there was no
// answer.
func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// isNoSuchBucket: the bucket itself is missing.
func isNoSuchBucket(err error) bool {
	var nb *types.NoSuchBucket
	var ae smithy.APIError
	return errors.As(err, &nb) || (errors.As(err, &ae) && ae.ErrorCode() == "NoSuchBucket")
}

func isNotFound(err error) bool {
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	return errors.As(err, &nsk) || errors.As(err, &nf) || httpStatus(err) == http.StatusNotFound
}

// isChecksumRefusal: the server found the body does not match the
// checksum header (or the declared length).
func isChecksumRefusal(err error) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.ErrorCode() {
	case "BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch", "IncompleteBody":
		return true
	}
	return false
}
