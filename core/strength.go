package core

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"strings"
	"unicode/utf8"

	"github.com/trustelem/zxcvbn"
	"golang.org/x/sys/unix"

	"luksdock/internal/secret"
)

// The one passphrase estimate luksdock shows: the wizard's Passphrase screen
// (a weak one needs a tick) and prepare (a weak one is warned about, on
// standard error or as a --json warning event).

// StrengthInputs are the words an attacker would try first against the
// passphrase of a disk labelled label whose kernel name is name.
func StrengthInputs(label, name string) []string {
	in := []string{label, "luksdock", "backup"}
	if name != "" {
		in = append(in, name)
	}
	return in
}

// Warning is the warning about a weak passphrase ("" when it is not weak).
func (v Strength) Warning() string {
	if !v.Weak() {
		return ""
	}
	return "the passphrase is " + v.Summary() + ": " + strings.Join(v.Feedback, "; ")
}

// Strength is zxcvbn's judgement of a passphrase: how many guesses an
// attacker who knows common passwords, words, names, dates and keyboard
// patterns needs, and what makes it guessable. It never holds the
// passphrase or pieces of it.
type Strength struct {
	Set      bool     `json:"-"`
	Score    int      `json:"score"` // 0..4 (zxcvbn)
	Log10    float64  `json:"log10_guesses"`
	Feedback []string `json:"feedback,omitempty"`
	// Partial > 0: only the first Partial characters were judged (JudgeMax).
	Partial int `json:"judged_characters,omitempty"`
}

// WeakScore: below it (fewer than 10^10 guesses) a passphrase is weak and
// needs an explicit acknowledgement.
const WeakScore = 3

func (v Strength) Weak() bool { return v.Set && v.Score < WeakScore }

// rating is the Strength in words.
func (v Strength) Rating() string {
	return [...]string{"very weak", "weak", "weak", "good", "strong"}[v.Score]
}

// summary is one line: "weak (zxcvbn score 1/4): about 10^5 guesses".
func (v Strength) Summary() string {
	g := fmt.Sprintf("10^%.0f", v.Log10)
	if v.Log10 < 4 {
		g = fmt.Sprintf("%.0f", math.Pow(10, v.Log10))
	}
	s := fmt.Sprintf("%s (zxcvbn score %d/4): about %s guesses to find it", v.Rating(), v.Score, g)
	if v.Partial > 0 {
		s += fmt.Sprintf(" (judged on its first %d characters)", v.Partial)
	}
	return s
}

// JudgeMax bounds what zxcvbn judges: its time grows steeply with length
// (0.37 s at 200 characters, 5.8 s at 512 on the machine that found it),
// and a passphrase whose first 64 bytes are strong is strong.
const JudgeMax = 64

// Judged is the part of p that zxcvbn judges: at most JudgeMax bytes, cut
// at a character boundary. The wizard copies only this part off the
// keystroke path.
func Judged(p []byte) []byte {
	if len(p) <= JudgeMax {
		return p
	}
	n := JudgeMax
	for n > 0 && !utf8.RuneStart(p[n]) {
		n--
	}
	return p[:n]
}

// AssessPassphrase runs zxcvbn on Judged(p), with the label and the
// target's name as words an attacker would try first.
func AssessPassphrase(p []byte, userInputs []string) Strength {
	return AssessPart(Judged(p), userInputs, utf8.RuneCount(p))
}

// AssessPart judges part, the Judged part of a passphrase of total
// characters; a verdict on less than the whole says so (Partial).
//
// zxcvbn takes the passphrase as a string and makes more (lower-cased
// copies, substrings, l33t variants) that nothing can wipe. So it runs in a
// short-lived child process (this program again, argv[0] strengthArg0),
// which reads the passphrase from a pipe, locks its memory where allowed,
// dumps no core, and exits: its copies end with it. Only if that child
// cannot run is zxcvbn run here.
func AssessPart(part []byte, userInputs []string, total int) Strength {
	if v, err := assessInChild(part, userInputs, total); err == nil {
		return v
	}
	return assess(part, userInputs, total)
}

// strengthArg0 is argv[0] of the child that runs zxcvbn.
const strengthArg0 = "luksdock-passphrase-strength"

func init() {
	if len(os.Args) == 1 && os.Args[0] == strengthArg0 {
		os.Exit(strengthChild(os.Stdin, os.Stdout))
	}
}

// strengthJob is the first line the child reads: everything but the
// passphrase, which follows it.
type strengthJob struct {
	Inputs []string `json:"inputs"`
	Total  int      `json:"total"`
}

// assessInChild runs assess in a child: the job as one JSON line, then the
// passphrase, on its standard input (written straight from p into the
// pipe); the Strength as JSON on its standard output.
func assessInChild(p []byte, userInputs []string, total int) (Strength, error) {
	line, err := json.Marshal(strengthJob{userInputs, total})
	if err != nil {
		return Strength{}, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return Strength{}, err
	}
	defer r.Close()
	defer w.Close()
	var out bytes.Buffer
	cmd := &exec.Cmd{Path: "/proc/self/exe", Args: []string{strengthArg0}, Env: []string{}, Dir: "/", Stdin: r, Stdout: &out}
	if err := cmd.Start(); err != nil {
		return Strength{}, err
	}
	r.Close()
	// a line of words and a passphrase fit in the pipe's buffer
	if _, err := w.Write(append(line, '\n')); err == nil {
		w.Write(p)
	}
	w.Close()
	if err := cmd.Wait(); err != nil {
		return Strength{}, err
	}
	var v Strength
	if err := json.Unmarshal(out.Bytes(), &v); err != nil {
		return Strength{}, fmt.Errorf("passphrase strength: %q: %v", out.Bytes(), err)
	}
	v.Set = true // not in the JSON
	return v, nil
}

// strengthChild is the child's main.
func strengthChild(in io.Reader, out io.Writer) int {
	_ = unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{Cur: 0, Max: 0})
	_ = unix.Mlockall(unix.MCL_CURRENT | unix.MCL_FUTURE | unix.MCL_ONFAULT) // root: never in swap
	var job strengthJob
	var line []byte
	var c [1]byte
	for {
		if _, err := io.ReadFull(in, c[:]); err != nil {
			return 1
		}
		if c[0] == '\n' {
			break
		}
		line = append(line, c[0])
	}
	if json.Unmarshal(line, &job) != nil {
		return 1
	}
	buf := secret.New(4096)
	n, _ := io.ReadFull(in, buf)
	v := assess(buf[:n], job.Inputs, job.Total)
	secret.Free(buf)
	if json.NewEncoder(out).Encode(v) != nil {
		return 1
	}
	return 0
}

// assess is zxcvbn's verdict on p (of a passphrase of total characters),
// computed in this process.
func assess(p []byte, userInputs []string, total int) Strength {
	r := zxcvbn.PasswordStrength(string(p), userInputs)
	v := Strength{Set: true, Score: r.Score, Log10: math.Log10(math.Max(r.Guesses, 1))}
	if n := utf8.RuneCount(p); n < total {
		v.Partial = n
	}
	seen := map[string]bool{}
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			v.Feedback = append(v.Feedback, s)
		}
	}
	for _, m := range r.Sequence {
		switch m.Pattern {
		case "dictionary":
			switch {
			case m.DictionaryName == "passwords":
				add("contains one of the most common passwords")
			case m.DictionaryName == "user_inputs":
				add("contains the disk's label or name")
			case strings.HasSuffix(m.DictionaryName, "names"):
				add("contains a common name")
			default:
				add("contains a common word on its own (a few random words together are much stronger)")
			}
			if m.L33t {
				add("letter-to-symbol swaps (a→@, o→0) are predictable")
			}
			if m.Reversed {
				add("reversed words are as easy to guess")
			}
		case "spatial":
			add("contains a keyboard pattern")
		case "repeat":
			add("contains repeated characters or groups")
		case "sequence":
			add("contains a sequence such as abc or 123")
		case "date", "regex":
			add("contains a date or year")
		}
	}
	if v.Score < WeakScore && total < 12 {
		add("it is short: add more words")
	}
	if v.Score < WeakScore {
		add("four or more random words make a strong passphrase that is easy to type")
	}
	return v
}
