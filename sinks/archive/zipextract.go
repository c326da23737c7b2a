package archive

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks/internal/fsx"
)

// isZip tells a zip archive by its first bytes: a local file header, or
// the end record of an empty archive.
func isZip(head []byte) bool {
	return bytes.HasPrefix(head, []byte("PK\x03\x04")) || bytes.HasPrefix(head, []byte("PK\x05\x06"))
}

// maxZipLink is the longest symlink target a zip member may hold.
const maxZipLink = 4 << 10

// unzip spools the zip archive r to a temporary file next to DIR, then
// unpacks each member with the rules of a tar member (member).
func (s *TarExtract) unzip(ctx context.Context, env *pipeline.Env, r io.Reader, buf []byte) error {
	f, err := os.CreateTemp(filepath.Dir(s.dir), "."+filepath.Base(s.dir)+".zip-")
	if err != nil {
		return fmt.Errorf("zip spool: %w", err)
	}
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	// Locked while this run owns it: a spool that can be locked is a killed
	// run's, which the next run removes (collectLeftovers).
	if leftoverLocks {
		if err := fsx.LockFile(f); errors.Is(err, fsx.ErrLocked) {
			return fmt.Errorf("zip spool: %w", err)
		}
	}
	n, err := io.CopyBuffer(onlyWriter{f}, r, buf)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("zip spool: %w", err)
	}
	zr, err := zip.NewReader(f, n)
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) { // member words that one
		return fmt.Errorf("not a zip archive, or a damaged one: %w", err)
	}
	for _, zf := range zr.File {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.zipMember(ctx, env, zf, buf); err != nil {
			return &MemberError{Member: zf.Name, Err: err}
		}
	}
	env.Log.Debug().Int64("files", s.files).Int64("bytes", s.bytes).Msg("zip archive unpacked")
	return nil
}

// zipMember unpacks one zip member, described as the tar header it
// amounts to.
func (s *TarExtract) zipMember(ctx context.Context, env *pipeline.Env, zf *zip.File, buf []byte) error {
	mode := zf.Mode()
	hdr := &tar.Header{Name: zf.Name, Mode: int64(mode.Perm()), ModTime: zf.Modified}
	switch {
	case mode.IsDir():
		hdr.Typeflag = tar.TypeDir
	case mode&fs.ModeSymlink != 0:
		hdr.Typeflag = tar.TypeSymlink
		if zf.UncompressedSize64 > maxZipLink {
			return fmt.Errorf("symlink target of %d bytes", zf.UncompressedSize64)
		}
		target, err := readZip(zf)
		if err != nil {
			return err
		}
		hdr.Linkname = string(target)
	case mode&fs.ModeCharDevice != 0:
		hdr.Typeflag = tar.TypeChar
	case mode&fs.ModeDevice != 0:
		hdr.Typeflag = tar.TypeBlock
	case mode&fs.ModeNamedPipe != 0:
		hdr.Typeflag = tar.TypeFifo
	case mode.IsRegular():
		hdr.Typeflag = tar.TypeReg
		hdr.Size = int64(zf.UncompressedSize64)
		if hdr.Size < 0 {
			return fmt.Errorf("size %d", zf.UncompressedSize64)
		}
		rc, err := zf.Open() // checks the size and the CRC-32 as it reads
		if err != nil {
			return err
		}
		defer rc.Close()
		return s.member(ctx, env, hdr, rc, buf)
	default:
		return fmt.Errorf("unsupported member mode %v", mode)
	}
	return s.member(ctx, env, hdr, nil, buf)
}

func readZip(zf *zip.File) ([]byte, error) {
	rc, err := zf.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, maxZipLink))
}
