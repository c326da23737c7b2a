package dlflow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/dlflow/dlflow/httpx"
	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks"
)

// errUpToDate ends a download whose output is as new as the server's copy
// (Request.IfNewer).
var errUpToDate = errors.New("the output is up to date")

// isFile reports whether path is an existing regular file.
func isFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// ifNewer is Request.IfNewer: it asks the server whether its copy is newer
// than the output (the one the URL names when output is ""), and returns
// errUpToDate when it is not. When it is, or when there is no output yet,
// the run may replace the output (d.replace).
func (d *Download) ifNewer(ctx context.Context, client *http.Client, header http.Header, rawURL, output string, policy httpx.RetryConfig) error {
	if output == "" {
		// The name the URL gives; the server's Content-Disposition, which
		// may give another, would cost the probe's GET to learn.
		guess, err := placeIn(d.req.Dir, defaultName(&pipeline.Resource{URL: rawURL}))
		if err != nil {
			return nil // the probe names the output and reports it
		}
		output = guess
	}
	if sinks.IsObjectURL(output) {
		return nil
	}
	fi, err := os.Stat(output)
	if err != nil || !fi.Mode().IsRegular() {
		return nil // nothing to compare with: the download makes it
	}
	release, err := d.client.hosts.acquire(ctx, hostKey(rawURL), 1)
	if err != nil {
		return err
	}
	defer release()
	same, why, err := d.notModified(ctx, client, header, rawURL, fi, policy)
	if err != nil {
		return &ProbeError{URL: httpx.RedactURL(rawURL), Err: fmt.Errorf("conditional request: %w", err)}
	}
	if !same {
		ev := d.log.Info()
		if serverLimit(why) {
			ev = d.log.Warn() // the server cannot tell: the whole file again
		}
		ev.Str("output", output).Str("reason", why).Msg("the server's copy is newer, or the server cannot tell: downloading it")
		d.replace = output
		return nil
	}
	d.setInfo(func(i *Info) { i.Path = output })
	d.log.Info().Str("output", output).Str("reason", why).Msg("up to date: not downloading")
	return errUpToDate
}

// notModified sends HEAD rawURL with If-Modified-Since: the file's
// modification time, retrying as the probe does (policy). same is true for a 304,
// or for a 200 whose Last-Modified is no later than the file's time and
// whose length is the file's size (a server that ignores the condition);
// why says what decided.
func (d *Download) notModified(ctx context.Context, client *http.Client, header http.Header, rawURL string, fi os.FileInfo, policy httpx.RetryConfig) (same bool, why string, err error) {
	if policy == (httpx.RetryConfig{}) {
		policy = httpx.DefaultRetry
	}
	r := httpx.Retrier{Config: policy, Owner: "conditional request"}
	for {
		resp, err := d.conditionalHead(ctx, client, header, rawURL, fi.ModTime())
		if err == nil {
			same, why, err = compareAnswer(resp, rawURL, fi)
			if err == nil {
				return same, why, nil
			}
		}
		wait, giveUp := r.Next(ctx, err, false)
		if giveUp != nil {
			return false, "", giveUp
		}
		d.log.Warn().Err(err).Float64("backoff_s", wait.Seconds()).Msg("retrying the conditional request")
		if err := httpx.Sleep(ctx, wait); err != nil {
			return false, "", err
		}
	}
}

func (d *Download) conditionalHead(ctx context.Context, client *http.Client, header http.Header, rawURL string, since time.Time) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, rawURL, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Accept-Encoding", "identity") // the length compared is the file's
	req.Header.Set("If-Modified-Since", since.UTC().Format(http.TimeFormat))
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	return resp, nil
}

// compareAnswer reads the answer to the conditional HEAD. A transient
// status comes back as an error to retry; any other answer that does not
// show the file unchanged (a 404, a 405 for HEAD) means "download", and
// the probe then reports what is wrong.
func compareAnswer(resp *http.Response, rawURL string, fi os.FileInfo) (same bool, why string, err error) {
	switch {
	case resp.StatusCode == http.StatusNotModified:
		return true, "not modified (304)", nil
	case resp.StatusCode != http.StatusOK:
		he := httpx.NewHTTPError(resp, httpx.RedactURL(rawURL))
		if httpx.IsTransient(he) {
			return false, "", he
		}
		return false, fmt.Sprintf("the server answered %d", resp.StatusCode), nil
	}
	lm, perr := http.ParseTime(resp.Header.Get("Last-Modified"))
	switch {
	case perr != nil:
		return false, noLastModified, nil
	case lm.After(fi.ModTime()):
		return false, fmt.Sprintf("Last-Modified %s is later than the file's %s", lm.UTC().Format(time.RFC3339), fi.ModTime().UTC().Format(time.RFC3339)), nil
	case resp.ContentLength != fi.Size():
		return false, fmt.Sprintf("the size is %d, the file's %d", resp.ContentLength, fi.Size()), nil
	}
	return true, "same Last-Modified and size", nil
}

// serverLimit reports whether compareAnswer's reason is the server's
// limit (no HEAD, no Last-Modified) rather than a newer copy.
func serverLimit(why string) bool {
	return why == noLastModified || strings.HasPrefix(why, "the server answered")
}

const noLastModified = "the server gives no Last-Modified"

// keepLastModified gives a completed file the server's Last-Modified as
// its modification time (as wget does), so that an IfNewer run can
// compare. A time it cannot set does not spoil the file: a warning says so.
func (d *Download) keepLastModified(output string, res *pipeline.Resource) {
	if output == "" || d.req.Writer != nil || d.req.Extract != "" || sinks.IsObjectURL(output) {
		return
	}
	lm, err := http.ParseTime(res.LastModified)
	if err != nil {
		return
	}
	if err := os.Chtimes(output, lm, lm); err != nil {
		d.log.Warn().Err(err).Str("output", output).Msg("could not set the file's modification time to the server's Last-Modified")
	}
}
