//go:build unix

package dlflow_test

import (
	"context"
	"errors"
	"io"
	"os"
	"syscall"
	"testing"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/bench/origin"
)

// A reader that goes away (`dlflow URL -o - | head -c 1000`) ends the
// download at once: the error says EPIPE, the server sent a bounded part
// of the 1 GiB file (the reorder window and the queues, not the file), no
// goroutine is left, and no file.
func TestWriterBrokenPipe(t *testing.T) {
	inEmptyDir(t)
	noLeaks(t)
	const size = 1 << 30
	srv := startOrigin(t, origin.Options{Size: size, Seed: 5})
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	head := make(chan []byte, 1)
	go func() {
		buf := make([]byte, 1000)
		n, _ := io.ReadFull(r, buf)
		r.Close()
		head <- buf[:n]
	}()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	res, err := newClient(t).Do(ctx, &dlflow.Request{URL: srv.URL(), Writer: w, Connections: 4})
	if !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("err = %v, want one wrapping EPIPE", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the download ended by the test's timeout, not by the closed pipe")
	}
	first := <-head
	want := make([]byte, 1000)
	origin.Fill(want, 0, 5)
	if string(first) != string(want) {
		t.Errorf("the reader got %d bytes, not the file's first 1000", len(first))
	}
	if served := srv.Stats().BytesServed; served > 256<<20 {
		t.Errorf("the server sent %d bytes for a reader gone after 1000", served)
	}
	if res.Path != "" || res.Partial != "" || res.Bytes >= size {
		t.Errorf("result %+v", res)
	}
}
