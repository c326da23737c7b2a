package bench_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"go.uber.org/goleak"

	"github.com/dlflow/dlflow/cmd"
)

// TestMain lets this test binary act as the dlflow CLI when the bench runs
// it as a child process (RUN_DLFLOW_CLI=1, as package cmd's own binary
// does); package bench itself does not import cmd. With
// BENCH_TEST_CORRUPT_S3=1 too, it is instead a broken tool that uploads
// the URL's bytes to the -o s3:// object with one byte changed, which the
// bench must catch. After the tests it fails the run if any goroutine
// leaked.
func TestMain(m *testing.M) {
	if os.Getenv("RUN_DLFLOW_CLI") == "1" {
		if os.Getenv("BENCH_TEST_CORRUPT_S3") == "1" {
			if err := corruptUpload(os.Args[1:]); err != nil {
				fmt.Fprintln(os.Stderr, "corrupt upload:", err)
				os.Exit(1)
			}
			return
		}
		cmd.Main()
		return
	}
	goleak.VerifyTestMain(m)
}

// corruptUpload puts the bytes of --url, the middle one changed, to the
// object of -o s3://BUCKET/KEY of the store the AWS_* variables name.
func corruptUpload(args []string) error {
	var url, out string
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "--url":
			url = args[i+1]
		case "-o":
			out = args[i+1]
		}
	}
	bucket, key, ok := strings.Cut(strings.TrimPrefix(out, "s3://"), "/")
	if url == "" || !ok {
		return fmt.Errorf("want --url URL -o s3://BUCKET/KEY in %q", args)
	}
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	data[len(data)/2] ^= 1
	c, err := minio.NewCore(strings.TrimPrefix(os.Getenv("AWS_ENDPOINT_URL"), "http://"), &minio.Options{
		Creds: credentials.NewEnvAWS(), Region: os.Getenv("AWS_REGION"),
	})
	if err != nil {
		return err
	}
	_, err = c.PutObject(context.Background(), bucket, key, bytes.NewReader(data), int64(len(data)), "", "", minio.PutObjectOptions{})
	return err
}
