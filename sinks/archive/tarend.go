package archive

import (
	"errors"
	"fmt"
	"io"

	"github.com/dlflow/dlflow/pipeline"
)

// checkEnd decides on a tar stream that ended after member last: with its
// end marker, it is complete. Without one (the stream stopped at a block
// boundary, or after one zero block) it may have been cut at a member
// boundary: when the server gave no length, nothing else tells a cut
// archive from a whole one, so that fails the run; when it gave one, the
// source checked the length, and a warning says the marker is missing.
func (s *TarExtract) checkEnd(env *pipeline.Env, er *endReader, last string) error {
	if !er.eof {
		return nil
	}
	if env.Resource == nil || env.Resource.Size < 0 {
		if last == "" {
			return fmt.Errorf("the stream ended after %d bytes, before any tar member or end marker, and the server sent no length: it was cut short", er.n)
		}
		return fmt.Errorf("tar archive ends after %d bytes, after member %q, without its end marker (two zero blocks), "+
			"and the server sent no length: it was cut short", er.n, shortName(last))
	}
	env.Log.Warn().Int64("bytes", er.n).Msg("the tar archive has no end marker (two zero blocks); its length matched the server's")
	return nil
}

// endReader is a tar stream as archive/tar reads it: it counts the bytes
// read, and records whether it returned io.EOF. tar.Reader's Next
// returns io.EOF both after the end marker, when it reads no further, and
// where the stream stops at a block boundary, when it has seen io.EOF;
// eof tells the two apart. It never returns bytes along with io.EOF.
type endReader struct {
	r   io.Reader
	n   int64
	eof bool
}

func (e *endReader) Read(p []byte) (int, error) {
	if e.eof {
		return 0, io.EOF
	}
	n, err := e.r.Read(p)
	e.n += int64(n)
	if errors.Is(err, io.EOF) {
		if n > 0 {
			return n, nil // the next Read returns io.EOF
		}
		e.eof = true
	}
	return n, err
}

// tarData is a tar member's data, with the count of the archive's bytes
// read (which does not move over a sparse member's holes).
type tarData struct {
	io.Reader
	er *endReader
}
