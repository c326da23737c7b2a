// Command get is the one-call program: it downloads URL into PATH with
// dlflow.Get and nothing else.
//
//	go run ./examples/get URL PATH
//
// It imports no backend (sinks/s3, stages/decompress), so it links neither
// the S3 client nor the decompressors; TestOneCallLinksNoBackend
// (imports_test.go) holds it to that. An s3:// PATH fails with a
// *dlflow.MissingBackendError that names the import to add.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/dlflow/dlflow"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: get URL PATH")
		os.Exit(2)
	}
	res, err := dlflow.Get(context.Background(), os.Args[1], os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "get:", err)
		os.Exit(1)
	}
	fmt.Println(res.Path, res.Bytes)
}
