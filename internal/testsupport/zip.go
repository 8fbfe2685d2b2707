package testsupport

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io/fs"
	"time"
)

// ZipFile is one entry of a zip built by Zip.
type ZipFile struct {
	Name string
	Data []byte
	Mode fs.FileMode // 0: 0644
}

// Zip builds a zip of files, in order, stored without compression and
// dated modified, so the same files always give the same bytes.
func Zip(modified time.Time, files ...ZipFile) ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range files {
		hdr := &zip.FileHeader{Name: f.Name, Method: zip.Store, Modified: modified}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		hdr.SetMode(mode)
		w, err := zw.CreateHeader(hdr)
		if err != nil {
			return nil, fmt.Errorf("zip entry %s: %w", f.Name, err)
		}
		if _, err := w.Write(f.Data); err != nil {
			return nil, fmt.Errorf("zip entry %s: %w", f.Name, err)
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
