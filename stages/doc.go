// Package stages holds dlflow's built-in source and transform stages.
// Importing the package registers them in pipeline.DefaultRegistry;
// Register adds them to another registry. The stage types, a file each:
//
//   - `http.source` (httpsource.go): streams the resource with one GET, in
//     order, resuming a cut body where it stopped.
//   - `range.splitter` (splitter.go): cuts the resource into byte ranges in
//     offset order, within the reorder window when the graph has one.
//   - `http.reader` (httpreader.go): fetches byte ranges with HTTP range
//     requests, one connection per worker, from the resource and its
//     mirrors, stealing the tail of slow readers.
//   - `coalesce.buffer` (coalesce.go): batches chunks into large contiguous
//     buffers for fewer, bigger writes.
//   - `reorder.heap` (reorder.go): restores file order within a bounded
//     window of held bytes.
//   - `progress.tap` (progress.go): passes chunks through and reports bytes,
//     rate and ETA.
//   - `hash.tap` (hash.go): verifies a checksum, the server's Repr-Digest or
//     a Metalink's piece hashes on the bytes passing by.
//
// The decompress stage lives in package stages/decompress, which registers
// it when imported, so that a program that does not decompress does not
// link the decoders.
//
// TestPackageDocsListEveryStage holds this list to the registry.
package stages
