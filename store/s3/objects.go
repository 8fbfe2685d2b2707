package s3

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"moonbit-registry/store"
)

// Objects are small objects under one key prefix of the bucket, written
// only with conditions: what replicas coordinate through (archive leases,
// the fleet's index tip). Keys are relative to the prefix.
type Objects struct {
	s      *Store
	prefix string
}

// maxSmallObject bounds what Read accepts: these objects are a few hundred
// bytes.
const maxSmallObject = 64 << 10

// Objects returns the small objects under <store prefix><name>/.
func (s *Store) Objects(name string) *Objects {
	return &Objects{s: s, prefix: s.prefix + name + "/"}
}

// Create writes key only if it does not exist (If-None-Match: *). created
// is false when it exists.
func (o *Objects) Create(ctx context.Context, key string, body []byte) (etag string, created bool, err error) {
	return o.put(ctx, key, body, &s3.PutObjectInput{IfNoneMatch: aws.String("*")})
}

// Swap replaces key only if it still has etag (If-Match). swapped is false
// when it changed or is gone.
func (o *Objects) Swap(ctx context.Context, key string, body []byte, etag string) (newETag string, swapped bool, err error) {
	return o.put(ctx, key, body, &s3.PutObjectInput{IfMatch: aws.String(etag)})
}

func (o *Objects) put(ctx context.Context, key string, body []byte, in *s3.PutObjectInput) (string, bool, error) {
	in.Bucket = aws.String(o.s.bucket)
	in.Key = aws.String(o.prefix + key)
	in.Body = bytes.NewReader(body)
	in.ContentLength = aws.Int64(int64(len(body)))
	in.ContentType = aws.String("application/json")
	start := time.Now()
	out, err := o.s.client.PutObject(ctx, in)
	o.s.track("put", start, err)
	if err != nil {
		switch httpStatus(err) {
		case http.StatusPreconditionFailed, http.StatusConflict:
			// It exists (Create) or changed (Swap), or another conditional
			// write of it is under way.
			return "", false, nil
		case http.StatusNotFound:
			if in.IfMatch != nil && !isNoSuchBucket(err) {
				return "", false, nil // Swap: it is gone
			}
		}
		return "", false, fmt.Errorf("s3: put %s in %s: %w: %w", o.prefix+key, o.s.where, store.ErrUnavailable, err)
	}
	return aws.ToString(out.ETag), true, nil
}

// Read returns key's body and ETag, and its age by the server's own clock
// (the Date of the answer minus Last-Modified), so replicas whose clocks
// disagree judge it alike. found is false when it does not exist.
func (o *Objects) Read(ctx context.Context, key string) (body []byte, etag string, age time.Duration, found bool, err error) {
	start := time.Now()
	out, err := o.s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(o.s.bucket), Key: aws.String(o.prefix + key)})
	o.s.track("get", start, err)
	if err != nil {
		if isNotFound(err) {
			return nil, "", 0, false, nil
		}
		return nil, "", 0, false, fmt.Errorf("s3: get %s in %s: %w: %w", o.prefix+key, o.s.where, store.ErrUnavailable, err)
	}
	defer out.Body.Close()
	body, err = io.ReadAll(io.LimitReader(out.Body, maxSmallObject+1))
	if err != nil {
		return nil, "", 0, false, fmt.Errorf("s3: get %s in %s: %w", o.prefix+key, o.s.where, err)
	}
	if len(body) > maxSmallObject {
		return nil, "", 0, false, fmt.Errorf("s3: get %s in %s: larger than %d bytes", o.prefix+key, o.s.where, maxSmallObject)
	}
	if date, ok := awsmiddleware.GetServerTime(out.ResultMetadata); ok && out.LastModified != nil {
		age = max(date.Sub(*out.LastModified), 0)
	}
	return body, aws.ToString(out.ETag), age, true, nil
}

// Remove deletes key; a missing key is not an error.
func (o *Objects) Remove(ctx context.Context, key string) error {
	start := time.Now()
	_, err := o.s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(o.s.bucket), Key: aws.String(o.prefix + key)})
	o.s.track("delete", start, err)
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("s3: delete %s in %s: %w", o.prefix+key, o.s.where, err)
	}
	return nil
}

// PutFile uploads the file at path as key, unconditionally (bundles: each
// key is written once, by the replica that names it).
func (o *Objects) PutFile(ctx context.Context, key, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("s3: upload %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("s3: upload %s: %w", path, err)
	}
	start := time.Now()
	_, err = o.s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(o.s.bucket), Key: aws.String(o.prefix + key),
		Body: f, ContentLength: aws.Int64(fi.Size()), ContentType: aws.String("application/octet-stream"),
	})
	o.s.track("put", start, err)
	if err != nil {
		return fmt.Errorf("s3: put %s in %s: %w", o.prefix+key, o.s.where, err)
	}
	return nil
}

// GetFile downloads key into the file at path; found is false when key
// does not exist.
func (o *Objects) GetFile(ctx context.Context, key, path string) (found bool, err error) {
	start := time.Now()
	out, err := o.s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(o.s.bucket), Key: aws.String(o.prefix + key)})
	o.s.track("get", start, err)
	if err != nil {
		if isNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("s3: get %s in %s: %w", o.prefix+key, o.s.where, err)
	}
	defer out.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return false, fmt.Errorf("s3: download %s: %w", o.prefix+key, err)
	}
	if _, err := io.Copy(f, out.Body); err != nil {
		f.Close()
		return false, fmt.Errorf("s3: get %s in %s: %w", o.prefix+key, o.s.where, err)
	}
	if err := f.Close(); err != nil {
		return false, fmt.Errorf("s3: download %s: %w", o.prefix+key, err)
	}
	return true, nil
}

// List returns every key under the prefix (relative to it).
func (o *Objects) List(ctx context.Context) ([]string, error) {
	var keys []string
	p := s3.NewListObjectsV2Paginator(o.s.client, &s3.ListObjectsV2Input{Bucket: aws.String(o.s.bucket), Prefix: aws.String(o.prefix)})
	for p.HasMorePages() {
		start := time.Now()
		page, err := p.NextPage(ctx)
		o.s.track("list", start, err)
		if err != nil {
			return nil, fmt.Errorf("s3: list %s in %s: %w: %w", o.prefix, o.s.where, store.ErrUnavailable, err)
		}
		for _, obj := range page.Contents {
			if k, ok := strings.CutPrefix(aws.ToString(obj.Key), o.prefix); ok && k != "" {
				keys = append(keys, k)
			}
		}
	}
	return keys, nil
}
