// Command serve runs the test origin on 127.0.0.1 for manual tests and
// demos of the CLI (a progress bar needs a download that takes a while):
//
//	go run ./internal/cmd/serve --size 200MiB --rate 20MiB
//
// It prints the file's URL and sha256, then serves until interrupted.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dlflow/dlflow/bench/origin"
	"github.com/dlflow/dlflow/pipeline"
)

func main() {
	size := flag.String("size", "200MiB", "size of the served file")
	rate := flag.String("rate", "0", "bytes per second per connection, e.g. 20MiB (0: unlimited)")
	latency := flag.Duration("latency", 0, "delay before each response header")
	seed := flag.Uint64("seed", 1, "selects the generated content")
	flag.Parse()
	n, err := pipeline.ParseByteSize(*size)
	if err != nil {
		fmt.Fprintf(os.Stderr, "serve: --size: %v\n", err)
		os.Exit(2)
	}
	r, err := pipeline.ParseByteSize(*rate)
	if err != nil {
		fmt.Fprintf(os.Stderr, "serve: --rate: %v\n", err)
		os.Exit(2)
	}
	srv, err := origin.Start(origin.Options{Size: int64(n), Seed: *seed, RateLimit: int64(r), Latency: *latency})
	if err != nil {
		fmt.Fprintf(os.Stderr, "serve: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("%s\nsha256 %s\n", srv.URL(), origin.SHA256Hex(int64(n), *seed))
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	<-sigs
	done := make(chan struct{})
	go func() { srv.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
}
