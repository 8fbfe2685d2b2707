package private

import (
	"archive/zip"
	"bytes"
	"cmp"
	"encoding/binary"
	"io"
	"slices"
)

// Signatures and fixed sizes of the zip records checkLayout reads
// (PKWARE APPNOTE 4.3).
const (
	sigLocal      = 0x04034b50
	sigDescriptor = 0x08074b50
	sigEnd        = 0x06054b50
	localSize     = 30
	endSize       = 22
	flagDescribed = 0x8 // sizes and CRC follow the data
)

// checkLayout accepts only a zip whose every byte is accounted for by the
// central directory that archive/zip read (zr, of size bytes from r): the
// entries' local headers one after another from offset 0, each naming the
// same file with the same method, sizes and CRC as the directory says,
// then the directory, then its end record at the very end. Anything else,
// data in front, two zips glued together (a client's unzip may read the
// first one's entries, which nobody checked), gaps or trailing bytes, is
// refused.
func checkLayout(r io.ReaderAt, size int64, zr *zip.Reader) error {
	end, err := readEnd(r, size)
	if err != nil {
		return err
	}
	if int(end.entries) != len(zr.File) {
		return invalid("the zip's end record counts %d entries, its directory %d", end.entries, len(zr.File))
	}
	files := slices.Clone(zr.File)
	slices.SortFunc(files, func(a, b *zip.File) int {
		ao, _ := a.DataOffset()
		bo, _ := b.DataOffset()
		return cmp.Compare(ao, bo)
	})
	var at int64
	for _, f := range files {
		next, err := checkLocal(r, at, f)
		if err != nil {
			return err
		}
		at = next
	}
	if at != int64(end.dirOffset) {
		return invalid("the zip has %d bytes between its last entry and its directory (glued or padded archives are not taken)", int64(end.dirOffset)-at)
	}
	if int64(end.dirOffset)+int64(end.dirSize) != size-endSize-int64(end.commentLen) {
		return invalid("the zip's directory does not end where its end record starts")
	}
	return nil
}

type endRecord struct {
	entries            uint16
	dirSize, dirOffset uint32
	commentLen         uint16
}

// readEnd reads the end-of-central-directory record, which must end the
// file exactly (its comment included).
func readEnd(r io.ReaderAt, size int64) (endRecord, error) {
	tail := min(size, endSize+0xFFFF)
	buf := make([]byte, tail)
	if _, err := r.ReadAt(buf, size-tail); err != nil && err != io.EOF {
		return endRecord{}, invalid("the zip cannot be read: %v", err)
	}
	for i := len(buf) - endSize; i >= 0; i-- {
		if binary.LittleEndian.Uint32(buf[i:]) != sigEnd {
			continue
		}
		e := endRecord{
			entries:    binary.LittleEndian.Uint16(buf[i+10:]),
			dirSize:    binary.LittleEndian.Uint32(buf[i+12:]),
			dirOffset:  binary.LittleEndian.Uint32(buf[i+16:]),
			commentLen: binary.LittleEndian.Uint16(buf[i+20:]),
		}
		if i+endSize+int(e.commentLen) != len(buf) {
			continue // a signature inside a comment or data
		}
		if e.entries == 0xFFFF || e.dirSize == 0xFFFFFFFF || e.dirOffset == 0xFFFFFFFF {
			return endRecord{}, invalid("zip64 archives are not taken (an archive is at most %d MiB)", DefaultMaxArchiveSize>>20)
		}
		return e, nil
	}
	return endRecord{}, invalid("the zip's end record does not end the file (data after the archive is not taken)")
}

// checkLocal checks f's local header at offset at against the directory
// and returns where the next record starts.
func checkLocal(r io.ReaderAt, at int64, f *zip.File) (int64, error) {
	var h [localSize]byte
	if _, err := r.ReadAt(h[:], at); err != nil {
		return 0, invalid("entry %q: no local header at offset %d: %v", f.Name, at, err)
	}
	le := binary.LittleEndian
	if le.Uint32(h[0:]) != sigLocal {
		return 0, invalid("entry %q: offset %d holds no local header (data in front of or between entries is not taken)", f.Name, at)
	}
	flags, method := le.Uint16(h[6:]), le.Uint16(h[8:])
	nameLen, extraLen := int64(le.Uint16(h[26:])), int64(le.Uint16(h[28:]))
	name := make([]byte, nameLen)
	if _, err := r.ReadAt(name, at+localSize); err != nil {
		return 0, invalid("entry %q: its local header cannot be read: %v", f.Name, err)
	}
	data, err := f.DataOffset()
	if err != nil {
		return 0, invalid("entry %q: %v", f.Name, err)
	}
	switch {
	case !bytes.Equal(name, []byte(f.Name)):
		return 0, invalid("entry %q: its local header names %q", f.Name, name)
	case method != f.Method || flags&flagDescribed != f.Flags&flagDescribed:
		return 0, invalid("entry %q: its local header and the directory disagree on how it is stored", f.Name)
	case data != at+localSize+nameLen+extraLen:
		return 0, invalid("entry %q: its data is not where its local header says", f.Name)
	case flags&flagDescribed == 0 && (le.Uint32(h[14:]) != f.CRC32 || int64(le.Uint32(h[18:])) != int64(f.CompressedSize64) ||
		int64(le.Uint32(h[22:])) != int64(f.UncompressedSize64)):
		return 0, invalid("entry %q: its local header and the directory disagree on its size or CRC", f.Name)
	}
	next := data + int64(f.CompressedSize64)
	if flags&flagDescribed != 0 {
		// A data descriptor: an optional signature, CRC, both sizes.
		var d [16]byte
		if _, err := r.ReadAt(d[:12], next); err != nil {
			return 0, invalid("entry %q: its data descriptor cannot be read: %v", f.Name, err)
		}
		if le.Uint32(d[0:]) == sigDescriptor {
			if _, err := r.ReadAt(d[:], next); err != nil {
				return 0, invalid("entry %q: its data descriptor cannot be read: %v", f.Name, err)
			}
			next += 4
			copy(d[:12], d[4:16])
		}
		if le.Uint32(d[0:]) != f.CRC32 || int64(le.Uint32(d[4:])) != int64(f.CompressedSize64) || int64(le.Uint32(d[8:])) != int64(f.UncompressedSize64) {
			return 0, invalid("entry %q: its data descriptor and the directory disagree", f.Name)
		}
		next += 12
	}
	return next, nil
}
