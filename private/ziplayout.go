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
	sigCentral    = 0x02014b50
	sigDescriptor = 0x08074b50
	sigEnd        = 0x06054b50
	localSize     = 30
	centralSize   = 46
	endSize       = 22
	flagDescribed = 0x8 // sizes and CRC follow the data

	// Extra fields that carry another name for an entry (Info-ZIP's
	// Unicode Path and Unicode Comment): some unzips take that name
	// instead of the one checked.
	extraUnicodePath    = 0x7075
	extraUnicodeComment = 0x6375
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
	return checkCentral(r, end, zr)
}

// checkCentral reads the central directory record by record: they must
// fill it exactly, in archive/zip's order, with the names it read, and
// carry no second name for an entry.
func checkCentral(r io.ReaderAt, end endRecord, zr *zip.Reader) error {
	dir := make([]byte, end.dirSize)
	if _, err := r.ReadAt(dir, int64(end.dirOffset)); err != nil {
		return invalid("the zip's directory cannot be read: %v", err)
	}
	le := binary.LittleEndian
	at := 0
	for _, f := range zr.File {
		if len(dir)-at < centralSize || le.Uint32(dir[at:]) != sigCentral {
			return invalid("the zip's directory does not hold entry %q where it should", f.Name)
		}
		n, m, k := int(le.Uint16(dir[at+28:])), int(le.Uint16(dir[at+30:])), int(le.Uint16(dir[at+32:]))
		if len(dir)-at < centralSize+n+m+k || string(dir[at+centralSize:at+centralSize+n]) != f.Name {
			return invalid("the zip's directory does not hold entry %q where it should", f.Name)
		}
		if hasExtra(dir[at+centralSize+n:at+centralSize+n+m], extraUnicodePath, extraUnicodeComment) {
			return invalid("entry %q carries a second name (a Unicode Path extra field); unzips disagree on which counts", f.Name)
		}
		at += centralSize + n + m + k
	}
	if at != len(dir) {
		return invalid("the zip's directory has %d bytes after its last entry", len(dir)-at)
	}
	return nil
}

// hasExtra reports whether extra fields hold one of ids (or cannot be
// read, which counts as holding anything).
func hasExtra(extra []byte, ids ...uint16) bool {
	le := binary.LittleEndian
	for len(extra) > 0 {
		if len(extra) < 4 {
			return true
		}
		id, size := le.Uint16(extra), int(le.Uint16(extra[2:]))
		if len(extra) < 4+size {
			return true
		}
		if slices.Contains(ids, id) {
			return true
		}
		extra = extra[4+size:]
	}
	return false
}

type endRecord struct {
	entries            uint16
	dirSize, dirOffset uint32
	commentLen         uint16
}

// readEnd reads the end-of-central-directory record archive/zip reads (the
// last signature in the file), which must end the file exactly, its
// comment included.
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
		if i+endSize+int(e.commentLen) > len(buf) {
			continue // a signature inside a comment or data, as archive/zip reads it
		}
		if i+endSize+int(e.commentLen) != len(buf) {
			return endRecord{}, invalid("the zip's end record does not end the file (data after the archive is not taken)")
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
	nameExtra := make([]byte, nameLen+extraLen)
	if _, err := r.ReadAt(nameExtra, at+localSize); err != nil {
		return 0, invalid("entry %q: its local header cannot be read: %v", f.Name, err)
	}
	name, extra := nameExtra[:nameLen], nameExtra[nameLen:]
	if le.Uint32(h[18:]) == 0xFFFFFFFF || le.Uint32(h[22:]) == 0xFFFFFFFF {
		return 0, invalid("entry %q is stored as zip64; zip64 archives are not taken (an archive is at most %d MiB)", f.Name, DefaultMaxArchiveSize>>20)
	}
	if hasExtra(extra, extraUnicodePath, extraUnicodeComment) {
		return 0, invalid("entry %q carries a second name (a Unicode Path extra field); unzips disagree on which counts", f.Name)
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
