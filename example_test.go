package dlflow_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/bench/origin"
)

// exampleServer serves a file of size bytes on 127.0.0.1, as any HTTP
// server would.
func exampleServer(size int64) *origin.Server {
	srv, err := origin.Start(origin.Options{Size: size, Seed: 1, Path: "/file.iso"})
	if err != nil {
		log.Fatal(err)
	}
	return srv
}

func exampleDir() string {
	dir, err := os.MkdirTemp("", "dlflow-example-")
	if err != nil {
		log.Fatal(err)
	}
	return dir
}

func ExampleGet() {
	srv := exampleServer(32 << 20)
	defer srv.Close()
	dir := exampleDir()
	defer os.RemoveAll(dir)

	res, err := dlflow.Get(context.Background(), srv.URL(), filepath.Join(dir, "file.iso"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(filepath.Base(res.Path), res.Bytes, "bytes over", res.Connections, "connections")
	// Output: file.iso 33554432 bytes over 8 connections
}

// A client with progress: Start returns at once, and the download reports
// how far it is until Wait returns.
func ExampleClient_Start() {
	srv := exampleServer(8 << 20)
	defer srv.Close()
	dir := exampleDir()
	defer os.RemoveAll(dir)

	client := dlflow.NewClient()
	defer client.CloseIdleConnections()
	d := client.Start(context.Background(), &dlflow.Request{
		URL:      srv.URL(),
		Path:     filepath.Join(dir, "file.iso"),
		Checksum: "sha256:" + origin.SHA256Hex(8<<20, 1),
	})
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for running := true; running; {
		select {
		case <-tick.C:
			p := d.Progress()
			log.Printf("%d of %d bytes, %.0f B/s, eta %v", p.Done, p.Total, p.Rate, p.ETA)
		case <-d.Done():
			running = false
		}
	}
	res, err := d.Wait()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Bytes, "bytes,", res.Checksum[:14]+"...", "verified")
	// Output: 8388608 bytes, sha256:047ed0c... verified
}

// A batch: requests stream in, a few download at a time over shared
// connections, and each result comes out as its download ends.
func ExampleClient_Batch() {
	srv := exampleServer(1 << 20)
	defer srv.Close()
	dir := exampleDir()
	defer os.RemoveAll(dir)

	client := dlflow.NewClient(dlflow.WithMaxPerHost(4))
	defer client.CloseIdleConnections()
	reqs := make(chan *dlflow.Request)
	go func() {
		defer close(reqs)
		for _, name := range []string{"a.iso", "b.iso", "../c.iso"} {
			reqs <- &dlflow.Request{URL: srv.URL(), Dir: dir, Path: name}
		}
	}()
	ok := 0
	for r := range client.Batch(context.Background(), 2, reqs) {
		if r.Err != nil {
			fmt.Println(r.Request.Path, "failed:", r.Err != nil)
			continue
		}
		ok++
	}
	fmt.Println(ok, "downloaded")
	// Output:
	// ../c.iso failed: true
	// 2 downloaded
}

// A download to a writer: the bytes arrive in order, here into a hash, and
// nothing is written to disk. Over ranges, a reorder window bounds what
// waits for the bytes before it.
func ExampleRequest_writer() {
	srv := exampleServer(32 << 20)
	defer srv.Close()

	h := sha256.New()
	res, err := dlflow.NewClient().Do(context.Background(), &dlflow.Request{URL: srv.URL(), Writer: h})
	if err != nil {
		log.Fatal(err) // a checksum mismatch comes here after the bytes were written
	}
	fmt.Printf("%d bytes over %d connections, path %q, sha256 matches: %v\n",
		res.Bytes, res.Connections, res.Path, hex.EncodeToString(h.Sum(nil)) == origin.SHA256Hex(32<<20, 1))
	// Output: 33554432 bytes over 8 connections, path "", sha256 matches: true
}
