package luks

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// TPM2TokenType is the LUKS2 token systemd-cryptenroll writes for a key
// sealed to a TPM2; cryptsetup opens with it through systemd's token
// plugin (libcryptsetup-token-systemd-tpm2.so, in Debian 12's systemd).
const TPM2TokenType = "systemd-tpm2"

// tpm2Env is the environment of systemd-cryptenroll and of cryptsetup
// when it uses the systemd-tpm2 token. The TPM2 is the kernel's resource
// manager (/dev/tpmrm0, "auto"), or the TCTI in systemd's own
// SYSTEMD_TPM2_DEVICE when luksdock was given one in its environment
// (systemd-cryptenroll honours it; the tests' swtpm comes this way). It is
// passed on as it is: it names a device, never a secret.
func tpm2Env() []string {
	env := append(cleanEnv(), "SYSTEMD_LOG_COLOR=0", "SYSTEMD_COLORS=0")
	if d := os.Getenv("SYSTEMD_TPM2_DEVICE"); d != "" {
		env = append(env, "SYSTEMD_TPM2_DEVICE="+d)
	}
	return env
}

// HasTPM2 says whether this machine can seal a host key to a TPM2: a TPM2
// (/dev/tpmrm0, or SYSTEMD_TPM2_DEVICE, see tpm2Env), systemd-cryptenroll
// and the tpm2-tss libraries it loads. why says what is missing. Whether
// cryptsetup's token plugin can unseal with it is proved after the seal
// (TestTPM2Device): systemd 252's plugin opens a kernel TPM2 device only.
func HasTPM2() (ok bool, why string) {
	if _, err := exec.LookPath("systemd-cryptenroll"); err != nil {
		return false, "systemd-cryptenroll is not installed"
	}
	if !tssInstalled() {
		return false, "the TPM2 libraries systemd loads are not installed (Debian: apt install libtss2-esys-3.0.2-0 libtss2-rc0 libtss2-mu0)"
	}
	if os.Getenv("SYSTEMD_TPM2_DEVICE") != "" {
		return true, ""
	}
	if _, err := os.Stat("/dev/tpmrm0"); err != nil {
		return false, "this machine has no TPM2 (/dev/tpmrm0)"
	}
	return true, ""
}

// tssInstalled says whether the tpm2-tss libraries systemd dlopens for a
// TPM2 (esys, rc, mu) are in a library directory.
func tssInstalled() bool {
	for _, lib := range []string{"libtss2-esys.so.0", "libtss2-rc.so.0", "libtss2-mu.so.0"} {
		found := false
		for _, dir := range []string{"/usr/lib/*", "/lib/*", "/usr/lib64", "/usr/lib", "/lib64", "/lib"} {
			if m, _ := filepath.Glob(filepath.Join(dir, lib)); len(m) > 0 {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// TPM2PCRs are the PCRs a host key is bound to: none. The key is sealed
// to this machine's TPM2 (its storage root key never leaves the chip), so
// the disk opens on this machine only; binding it to PCR 7 (Secure Boot
// state) or 0-2 (firmware) as well would lock the backups out after a
// firmware, dbx or boot-loader update, silently, on a machine that backs
// up on its own. See docs/rotation.md.
const TPM2PCRs = ""

// cryptenrollKeyName is the kernel keyring entry in which
// systemd-cryptenroll (ask_password_auto, ASK_PASSWORD_ACCEPT_CACHED)
// looks for the passphrase before it asks a terminal or an agent.
const cryptenrollKeyName = "cryptenroll"

// EnrollTPM2Device adds a keyslot to d sealed to this machine's TPM2
// (systemd-cryptenroll --tpm2-device), unlocking with passphrase, and
// returns its number. systemd-cryptenroll adds it with PBKDF2 at its
// minimal cost and writes a systemd-tpm2 token naming it.
//
// The passphrase reaches systemd-cryptenroll through the kernel keyring,
// never argv, the environment or a file: Debian 12's systemd 252 asks
// with ask_password_auto(keyname "cryptenroll", ACCEPT_CACHED|PUSH_CACHE),
// which takes a "user" key of that name from the keyrings it searches
// first. It is added to a new anonymous session keyring that only this
// locked thread and the child it starts hold, and invalidated when the
// child ends (a timeout of a minute backs that up). Its
// --unlock-key-file reads only a regular file (a pipe fails: it seeks),
// and feeding its terminal prompt makes it push the passphrase into
// root's user keyring for two and a half minutes.
func EnrollTPM2Device(ctx context.Context, d Device, passphrase []byte, pcrs string) (slot int, err error) {
	err = d.modifyHeader(func(path string) (err error) {
		if err := refuseHostile(path); err != nil {
			return err
		}
		slot, err = newSlot(path, "systemd-cryptenroll", func() error {
			_, err := runTPM2Tool(ctx, "systemd-cryptenroll", []string{"--tpm2-device=auto", "--tpm2-pcrs=" + pcrs, path}, passphrase)
			return err
		})
		return err
	})
	return slot, err
}

// WipeSlotTPM2Device wipes keyslot slot of d and the systemd-tpm2 token
// naming it (systemd-cryptenroll --wipe-slot: no passphrase is needed).
func WipeSlotTPM2Device(ctx context.Context, d Device, slot int) error {
	return d.modifyHeader(func(path string) error {
		_, err := runTPM2Tool(ctx, "systemd-cryptenroll", []string{"--wipe-slot=" + strconv.Itoa(slot), path}, nil)
		return err
	})
}

// OpenTPM2 opens the LUKS device dev as /dev/mapper/name with its
// systemd-tpm2 token: cryptsetup asks the token plugin, which unseals the
// key with this machine's TPM2. No secret passes through luksdock.
func OpenTPM2(ctx context.Context, dev, name string) error {
	if err := refuseHostile(dev); err != nil {
		return err
	}
	_, err := runTPM2Tool(ctx, "cryptsetup", []string{"open", "--type", "luks2", "--token-only", "--token-type", TPM2TokenType, dev, name}, nil)
	return err
}

// TestTPM2Device proves that d's systemd-tpm2 token opens it: cryptsetup
// open --test-passphrase --token-only unseals the key with the TPM2 and
// checks it against the header (no device-mapper needed, nothing opened).
// systemd 252's token plugin ignores SYSTEMD_TPM2_DEVICE and opens the
// kernel's TPM2 device, as the dock service will: a keyslot sealed to any
// other TPM2 fails here.
func TestTPM2Device(ctx context.Context, d Device) error {
	return d.withPath(func(path string) error {
		if err := refuseHostile(path); err != nil {
			return err
		}
		_, err := runTPM2Tool(ctx, "cryptsetup", []string{"open", "--test-passphrase", "--type", "luks2", "--token-only", "--token-type", TPM2TokenType, path}, nil)
		return err
	})
}

// TokenTypes are the types of the LUKS2 tokens of d, by token number.
func TokenTypes(d Device) (map[int]string, error) {
	out := map[int]string{}
	err := d.withPath(func(path string) error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		toks, err := readTokens(f)
		if err != nil {
			return err
		}
		for k, raw := range toks {
			n, err := strconv.Atoi(k)
			if err != nil {
				continue
			}
			var t struct {
				Type string `json:"type"`
			}
			if json.Unmarshal(raw, &t) == nil {
				out[n] = t.Type
			}
		}
		return nil
	})
	return out, err
}

// runTPM2Tool runs prog (systemd-cryptenroll, or cryptsetup with the
// systemd-tpm2 token) with args; with passphrase non-nil it is put in the
// kernel keyring for it (see EnrollTPM2Device).
// Standard input is /dev/null, so it never waits at a terminal, and it
// is bounded in time: it cannot wait for an agent for ever.
func runTPM2Tool(ctx context.Context, prog string, args []string, passphrase []byte) ([]byte, error) {
	type result struct {
		out []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// The session keyring is part of this thread's credentials: the
		// thread stays locked to this goroutine and is never handed back
		// (no UnlockOSThread), so it exits with it, keyring and all; the
		// child is forked from it and inherits that keyring.
		runtime.LockOSThread()
		out, err := runOnThread(ctx, prog, args, passphrase)
		ch <- result{out, err}
	}()
	r := <-ch
	return r.out, r.err
}

func runOnThread(ctx context.Context, prog string, args []string, passphrase []byte) ([]byte, error) {
	if passphrase != nil {
		// KEYCTL_JOIN_SESSION_KEYRING with a NULL name: a new anonymous
		// session keyring for this thread only.
		ring, _, errno := unix.Syscall(unix.SYS_KEYCTL, unix.KEYCTL_JOIN_SESSION_KEYRING, 0, 0)
		if errno != 0 {
			return nil, fmt.Errorf("a session keyring for %s: %w", prog, errno)
		}
		id, err := unix.AddKey("user", cryptenrollKeyName, passphrase, int(ring))
		if err != nil {
			return nil, fmt.Errorf("putting the passphrase in the kernel keyring: %w", err)
		}
		defer unix.KeyctlInt(unix.KEYCTL_INVALIDATE, id, 0, 0, 0)
		_, _ = unix.KeyctlInt(unix.KEYCTL_SET_TIMEOUT, id, 60, 0, 0)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	// Were the passphrase refused, it would ask again through the agent
	// protocol; the caller checks the passphrase first, and the timeout
	// bounds such a wait.
	cmd.Env = tpm2Env()
	ownGroup(cmd, syscall.SIGKILL)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		code := exitStatus(err)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", prog, ctx.Err())
		}
		msg := strings.TrimSpace(errb.String())
		if msg == "" {
			msg = fmt.Sprintf("exit status %d", code)
		}
		return nil, fmt.Errorf("%s %s: %s", prog, args[0], msg)
	}
	return out.Bytes(), nil
}
