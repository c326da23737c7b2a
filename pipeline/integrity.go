package pipeline

import "errors"

// ErrCorrupt is what an error wraps when the downloaded bytes are known to
// be wrong, such as a checksum mismatch. A sink that keeps partial data for
// a later run to resume must throw it away instead: resuming would only
// keep the bad bytes. Test for it with errors.Is.
var ErrCorrupt = errors.New("downloaded data is corrupt")
