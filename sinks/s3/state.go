package s3

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks"
)

// s3StateSuffix names the state object of an upload: KEY.dlflow-upload.
// It lives beside the object rather than on the machine that began the
// upload, so that any machine with the credentials can resume it; and a
// pending upload itself cannot carry it, since S3 lists no metadata of
// pending uploads.
const s3StateSuffix = ".dlflow-upload"

// errNoState is readState's error when there is no state object.
var errNoState = errors.New("no upload state")

// s3State is the content of a state object: the identity of the resource
// as the file sink's resume state records it (URL hash, size, validators;
// no ranges: the parts are listed) plus the upload it belongs to.
type s3State struct {
	sinks.Identity
	UploadID string `json:"upload_id"`
	PartSize int64  `json:"part_size"`
	// Checksum is what binds each part's bytes (checksumCRC32C or
	// checksumMD5); "" in a state of a dlflow that sent Content-MD5
	// alone, whose upload goes on with MD5.
	Checksum string `json:"checksum,omitempty"`
}

func (s *Sink) stateKey() string { return s.obj.Key + s3StateSuffix }

// readState reads the state object; errNoState when there is none.
func (s *Sink) readState(ctx context.Context) (*s3State, error) {
	body, _, _, err := s.client.GetObject(ctx, s.obj.Bucket, s.stateKey(), minio.GetObjectOptions{})
	if isNotFound(err) {
		return nil, errNoState
	}
	if isNoSuchBucket(err) {
		return nil, &NoBucketError{Bucket: s.obj.Bucket} // removed since Preflight
	}
	if err != nil {
		return nil, fmt.Errorf("read s3://%s/%s: %w", s.obj.Bucket, s.stateKey(), err)
	}
	defer body.Close()
	data, err := io.ReadAll(io.LimitReader(body, 64<<10))
	if isNotFound(err) {
		return nil, errNoState
	}
	if err != nil {
		return nil, fmt.Errorf("read s3://%s/%s: %w", s.obj.Bucket, s.stateKey(), err)
	}
	var st s3State
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("s3://%s/%s: %w", s.obj.Bucket, s.stateKey(), err)
	}
	if st.Version != sinks.StateVersion || st.UploadID == "" {
		return nil, fmt.Errorf("s3://%s/%s: format version %d, want %d", s.obj.Bucket, s.stateKey(), st.Version, sinks.StateVersion)
	}
	return &st, nil
}

func (s *Sink) writeState(ctx context.Context, st *s3State) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	_, err = s.client.PutObject(ctx, s.obj.Bucket, s.stateKey(), bytes.NewReader(data), int64(len(data)), "", "",
		minio.PutObjectOptions{ContentType: "application/json"})
	if err != nil {
		return fmt.Errorf("write the upload state s3://%s/%s: %w", s.obj.Bucket, s.stateKey(), err)
	}
	return nil
}

func (s *Sink) removeState(ctx context.Context) error {
	err := s.client.RemoveObject(ctx, s.obj.Bucket, s.stateKey(), minio.RemoveObjectOptions{})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("remove the upload state s3://%s/%s: %w", s.obj.Bucket, s.stateKey(), err)
	}
	return nil
}

// dropState aborts the upload uploadID (when set) and removes the state
// object: what an earlier run left is not resumed.
func (s *Sink) dropState(ctx context.Context, env *pipeline.Env, uploadID string) error {
	if uploadID != "" {
		err := s.client.AbortMultipartUpload(ctx, s.obj.Bucket, s.obj.Key, uploadID)
		if err != nil && !isNoSuchUpload(err) {
			return fmt.Errorf("abort the earlier upload of %s: %w", s.obj, err)
		}
	}
	return s.removeState(ctx)
}

// listParts lists every part of the pending upload id.
func (s *Sink) listParts(ctx context.Context, id string) ([]minio.ObjectPart, error) {
	var parts []minio.ObjectPart
	marker := 0
	for range maxParts/1000 + 2 { // 1000 a page at most
		res, err := s.client.ListObjectParts(ctx, s.obj.Bucket, s.obj.Key, id, marker, 1000)
		if err != nil {
			return nil, err
		}
		parts = append(parts, res.ObjectParts...)
		if !res.IsTruncated || res.NextPartNumberMarker <= marker {
			return parts, nil
		}
		marker = res.NextPartNumberMarker
	}
	return parts, nil
}

func isNotFound(err error) bool {
	if err == nil {
		return false
	}
	code := minio.ToErrorResponse(err).Code
	return code == "NoSuchKey" || code == "NotFound" || minio.ToErrorResponse(err).StatusCode == 404 && code != "NoSuchBucket"
}

func isNoSuchBucket(err error) bool {
	return err != nil && minio.ToErrorResponse(err).Code == "NoSuchBucket"
}

func isNoSuchUpload(err error) bool {
	return err != nil && minio.ToErrorResponse(err).Code == "NoSuchUpload"
}

// newS3Client builds a client for c's endpoint, region and credentials,
// each from the environment when c leaves it unset: the variables the
// AWS tools read.
func newS3Client(c Config) (*minio.Core, *http.Transport, error) {
	endpoint := firstSet(c.Endpoint, os.Getenv("AWS_ENDPOINT_URL_S3"), os.Getenv("AWS_ENDPOINT_URL"), "https://s3.amazonaws.com")
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Trim(u.Path, "/") != "" {
		return nil, nil, fmt.Errorf("endpoint %q: want http(s)://host[:port]", endpoint)
	}
	region := firstSet(c.Region, os.Getenv("AWS_REGION"), os.Getenv("AWS_DEFAULT_REGION"), "us-east-1")
	creds := credentials.NewEnvAWS()
	if c.AccessKey != "" || c.SecretKey != "" {
		creds = credentials.NewStaticV4(c.AccessKey, c.SecretKey, "")
	}
	// A transport of its own, whose idle connections the sink closes when
	// a run is over: no goroutine of it outlives the download.
	transport, err := minio.DefaultTransport(u.Scheme == "https")
	if err != nil {
		return nil, nil, err
	}
	client, err := minio.NewCore(u.Host, &minio.Options{Creds: creds, Secure: u.Scheme == "https", Region: region, Transport: transport})
	if err != nil {
		return nil, nil, fmt.Errorf("s3 client for %s: %w", u.Host, err)
	}
	return client, transport, nil
}

func firstSet(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}
