// Command serve runs the test origin on 127.0.0.1 for manual tests and
// demos of the CLI (a progress bar needs a download that takes a while):
//
//	go run ./internal/cmd/serve --size 200MiB --rate 20MiB
//	go run ./internal/cmd/serve --size 256MiB --conn-rate 10MiB --latency 100ms  # the wan scenario
//	go run ./internal/cmd/serve --size 16KiB --files 300 --latency 50ms           # the small scenario
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
	connRate := flag.String("conn-rate", "0", "bytes per second per TCP connection over all its responses, e.g. 10MiB (0: unlimited)")
	latency := flag.Duration("latency", 0, "delay before each response header")
	seed := flag.Uint64("seed", 1, "selects the generated content")
	files := flag.Int("files", 0, "also serve this many files of --size at /files/0.bin, /files/1.bin, ... (the small scenario)")
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
	cr, err := pipeline.ParseByteSize(*connRate)
	if err != nil {
		fmt.Fprintf(os.Stderr, "serve: --conn-rate: %v\n", err)
		os.Exit(2)
	}
	srv, err := origin.Start(origin.Options{Size: int64(n), Seed: *seed, RateLimit: int64(r), ConnRateLimit: int64(cr), Latency: *latency, Files: *files})
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
