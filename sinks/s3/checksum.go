package s3

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/binary"
	"hash/crc32"
	"net/http"

	"github.com/minio/minio-go/v7"
)

// How each part's bytes are bound to its request, so that the store
// refuses a part changed on the way. Either is a header that the request
// signs over an unsigned payload (X-Amz-Content-Sha256: UNSIGNED-PAYLOAD,
// as minio-go sends over TLS): the signature binds the bytes through the
// checksum, and the store checks the bytes against it
// (TestS3CorruptedPartRefused). minio-go's default over plain HTTP, a
// streaming signature (a SHA-256 and an HMAC per 64 KiB, on both sides),
// took a third more CPU and more memory.
const (
	// checksumCRC32C is S3's flexible checksum, x-amz-checksum-crc32c,
	// where the store checks it (see beginUpload). CRC32C costs next to
	// nothing (SSE 4.2), where MD5 cost dlflow 1.4 s of CPU per GiB,
	// half of all its CPU in an upload while downloading.
	checksumCRC32C = "CRC32C"
	// checksumMD5 is Content-MD5, which every S3 store checks: the
	// fallback for a store that does not check flexible checksums, and
	// what an upload begun before them (a state object without checksum)
	// goes on with.
	checksumMD5 = "MD5"
)

// probePart is the part number of the probe that tells whether the store
// checks flexible checksums: the highest there is, so that a probe part
// the store kept is replaced by the last part of a resource of maxParts
// parts, or else left out of the completed object (S3 completes with
// the parts the request lists).
const probePart = maxParts

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32cBase64 is the x-amz-checksum-crc32c value of data.
func crc32cBase64(data []byte) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], crc32.Checksum(data, castagnoli))
	return base64.StdEncoding.EncodeToString(b[:])
}

// partOptions binds data to its part request by the upload's checksum.
func partOptions(checksum string, data []byte) minio.PutObjectPartOptions {
	opts := minio.PutObjectPartOptions{DisableContentSha256: true}
	if checksum == checksumCRC32C {
		opts.CustomHeader = http.Header{"X-Amz-Checksum-Crc32c": []string{crc32cBase64(data)}}
		return opts
	}
	sum := md5.Sum(data)
	opts.Md5Base64 = base64.StdEncoding.EncodeToString(sum[:])
	return opts
}

// beginUpload begins the multipart upload and asks the store, with a
// probe part whose x-amz-checksum-crc32c is wrong, whether it checks
// CRC32C. It returns the upload id and the checksum its parts carry:
// CRC32C where the store refused the probe for its checksum; MD5 where it
// took the probe (it ignores the header) or refused it for another
// reason (as S3 may refuse a part checksum that the upload did not
// declare).
//
// The upload declares no checksum algorithm: S3 then wants every part's
// checksum again when the upload completes, and a store need not list
// them (weed does not), so a resumed upload could not complete.
func (s *Sink) beginUpload(ctx context.Context) (id, checksum string, err error) {
	id, err = s.client.NewMultipartUpload(ctx, s.obj.Bucket, s.obj.Key, minio.PutObjectOptions{})
	if err != nil {
		return "", "", err
	}
	body := []byte("dlflow checksum probe")
	opts := minio.PutObjectPartOptions{DisableContentSha256: true,
		CustomHeader: http.Header{"X-Amz-Checksum-Crc32c": []string{crc32cBase64([]byte("other bytes"))}}}
	_, err = s.client.PutObjectPart(ctx, s.obj.Bucket, s.obj.Key, id, probePart, bytes.NewReader(body), int64(len(body)), opts)
	switch code := minio.ToErrorResponse(err).Code; {
	case err == nil:
		return id, checksumMD5, nil // it ignores the header
	case code == "BadDigest" || code == "XAmzContentChecksumMismatch" || code == "InvalidDigest":
		return id, checksumCRC32C, nil
	case ctx.Err() != nil:
		return id, "", err
	}
	return id, checksumMD5, nil
}
