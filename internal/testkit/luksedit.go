package testkit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"os"
	"testing"
)

// EditLUKS2 rewrites the JSON metadata of the LUKS2 header at offset base
// of path (a cryptsetup-made header) with edit, in both header copies, and
// recomputes each copy's checksum the way LUKS2 defines it: SHA-256 over the
// binary header (checksum field zeroed) followed by the JSON area. The
// result is a header cryptsetup and luksdock read as valid metadata, so a
// test exercises what the metadata says rather than a checksum mismatch.
// edit gets the decoded JSON; numbers stay json.Number so large values
// survive.
func EditLUKS2(t testing.TB, path string, base int64, edit func(meta map[string]any)) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var bin [4096]byte
	if _, err := f.ReadAt(bin[:], base); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bin[:6], []byte("LUKS\xba\xbe")) || binary.BigEndian.Uint16(bin[6:8]) != 2 {
		t.Fatalf("EditLUKS2: no LUKS2 header at %d of %s", base, path)
	}
	hdrSize := int64(binary.BigEndian.Uint64(bin[8:16]))
	all := make([]byte, hdrSize)
	if _, err := f.ReadAt(all, base); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(bytes.TrimRight(all[4096:], "\x00")))
	dec.UseNumber()
	var meta map[string]any
	if err := dec.Decode(&meta); err != nil {
		t.Fatalf("EditLUKS2: %v", err)
	}
	edit(meta)
	js, err := json.Marshal(meta)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(js)) >= hdrSize-4096 {
		t.Fatalf("EditLUKS2: the edited JSON (%d bytes) does not fit the %d-byte JSON area", len(js), hdrSize-4096)
	}
	// Both copies: primary at 0, secondary at hdrSize. Each keeps its own
	// binary header (offset and sequence id differ).
	for _, at := range []int64{0, hdrSize} {
		copyAll := make([]byte, hdrSize)
		if _, err := f.ReadAt(copyAll, base+at); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(copyAll[:4], []byte("LUKS")) && !bytes.Equal(copyAll[:4], []byte("SKUL")) {
			t.Fatalf("EditLUKS2: no header copy at %d", at)
		}
		clear(copyAll[4096:])
		copy(copyAll[4096:], js)
		clear(copyAll[448 : 448+64])
		sum := sha256.Sum256(copyAll)
		copy(copyAll[448:], sum[:])
		if _, err := f.WriteAt(copyAll, base+at); err != nil {
			t.Fatal(err)
		}
	}
}

// Obj returns meta[path[0]][path[1]]... as a JSON object, failing the test
// when one is missing: for EditLUKS2 edits such as
// Obj(t, meta, "keyslots", "0", "kdf")["time"] = 1 << 31.
func Obj(t testing.TB, meta map[string]any, path ...string) map[string]any {
	t.Helper()
	m := meta
	for _, p := range path {
		next, ok := m[p].(map[string]any)
		if !ok {
			t.Fatalf("LUKS2 metadata has no object %v", path)
		}
		m = next
	}
	return m
}
