package e2e

import (
	"fmt"
	"io"
)

// cpioWriter writes a "newc" (SVR4, no CRC) cpio archive, the format the
// Linux kernel unpacks as an initramfs. Only what an initramfs needs is
// supported: directories, regular files and symbolic links, all owned by
// root.
type cpioWriter struct {
	w     io.Writer
	n     int64 // bytes written so far
	inode uint32
	err   error
}

func newCpioWriter(w io.Writer) *cpioWriter { return &cpioWriter{w: w, inode: 1} }

func (c *cpioWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	m, err := c.w.Write(b)
	c.n += int64(m)
	c.err = err
}

func (c *cpioWriter) pad(align int64) {
	if r := c.n % align; r != 0 {
		c.write(make([]byte, align-r))
	}
}

// header writes one entry header followed by its name, 4-byte aligned.
func (c *cpioWriter) header(name string, mode uint32, size int64) {
	c.inode++
	nlink := 1
	if mode&0o170000 == 0o040000 {
		nlink = 2
	}
	h := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.inode, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, len(name)+1, 0)
	c.write([]byte(h))
	c.write(append([]byte(name), 0))
	c.pad(4)
}

// Dir adds a directory entry.
func (c *cpioWriter) Dir(name string, perm uint32) {
	c.header(name, 0o040000|perm, 0)
}

// File adds a regular file with the given contents.
func (c *cpioWriter) File(name string, perm uint32, data []byte) {
	c.header(name, 0o100000|perm, int64(len(data)))
	c.write(data)
	c.pad(4)
}

// Symlink adds a symbolic link name -> target.
func (c *cpioWriter) Symlink(name, target string) {
	c.header(name, 0o120000|0o777, int64(len(target)))
	c.write([]byte(target))
	c.pad(4)
}

// Close writes the trailer and pads the archive to a 512-byte multiple, so
// that another archive may be appended to it and still be found by the
// kernel's initramfs unpacker.
func (c *cpioWriter) Close() error {
	c.header("TRAILER!!!", 0, 0)
	c.pad(512)
	return c.err
}
