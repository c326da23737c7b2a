// Package decompress holds the decompress stage, which decodes a gzip or
// zstd stream. It lives apart from package stages so that a program that
// does not decompress does not link the decoders
// (github.com/klauspost/compress). Importing the package registers the
// stage type in pipeline.DefaultRegistry; Register adds it to another
// registry. The stage type:
//
//   - `decompress` (decompress.go): decompresses a gzip or zstd stream,
//     detected by its magic bytes, with a bound on the expansion.
//
// The dlflow command imports it; a library user who extracts archives
// imports it for its side effect:
//
//	import _ "github.com/dlflow/dlflow/stages/decompress"
//
// TestPackageDocsListEveryStage holds this list to the registry.
package decompress
