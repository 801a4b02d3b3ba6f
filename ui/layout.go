package ui

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// The keyboard-layout warning compares the keymaps configured on this
// machine (console and X) with the US keymap that boot-time passphrase
// prompts use, and names the characters of the passphrase that sit on a
// different key (or need AltGr, or are missing) on one of them.

// keyRows are the four main rows of a keyboard, unshifted and shifted, in
// the positions of the US layout's keys.
type keyRows [8]string

var usRows = keyRows{
	"`1234567890-=", "~!@#$%^&*()_+",
	"qwertyuiop[]\\", "QWERTYUIOP{}|",
	"asdfghjkl;'", "ASDFGHJKL:\"",
	"zxcvbnm,./", "ZXCVBNM<>?",
}

// layoutRows are the layouts luksdock knows, by XKB name.
var layoutRows = map[string]keyRows{
	"de":     {"^1234567890ß´", "°!\"§$%&/()=?`", "qwertzuiopü+#", "QWERTZUIOPÜ*'", "asdfghjklöä", "ASDFGHJKLÖÄ", "yxcvbnm,.-", "YXCVBNM;:_"},
	"ch":     {"§1234567890'^", "°+\"*ç%&/()=?`", "qwertzuiopü¨$", "QWERTZUIOPè!£", "asdfghjklöä", "ASDFGHJKLéà", "yxcvbnm,.-", "YXCVBNM;:_"},
	"fr":     {"²&é\"'(-è_çà)=", "~1234567890°+", "azertyuiop^$*", "AZERTYUIOP¨£µ", "qsdfghjklmù", "QSDFGHJKLM%", "wxcvbn,;:!", "WXCVBN?./§"},
	"be":     {"²&é\"'(§è!çà)-", "³1234567890°_", "azertyuiop^$µ", "AZERTYUIOP¨*£", "qsdfghjklmù", "QSDFGHJKLM%", "wxcvbn,;:=", "WXCVBN?./+"},
	"gb":     {"`1234567890-=", "¬!\"£$%^&*()_+", "qwertyuiop[]#", "QWERTYUIOP{}~", "asdfghjkl;'", "ASDFGHJKL:@", "zxcvbnm,./", "ZXCVBNM<>?"},
	"es":     {"º1234567890'¡", "ª!\"·$%&/()=?¿", "qwertyuiop`+ç", "QWERTYUIOP^*Ç", "asdfghjklñ´", "ASDFGHJKLÑ¨", "zxcvbnm,.-", "ZXCVBNM;:_"},
	"it":     {"\\1234567890'ì", "|!\"£$%&/()=?^", "qwertyuiopè+ù", "QWERTYUIOPé*§", "asdfghjklòà", "ASDFGHJKLç°", "zxcvbnm,.-", "ZXCVBNM;:_"},
	"se":     {"§1234567890+´", "½!\"#¤%&/()=?`", "qwertyuiopå¨'", "QWERTYUIOPÅ^*", "asdfghjklöä", "ASDFGHJKLÖÄ", "zxcvbnm,.-", "ZXCVBNM;:_"},
	"dvorak": {"`1234567890[]", "~!@#$%^&*(){}", "',.pyfgcrl/=\\", "\"<>PYFGCRL?+|", "aoeuidhtns-", "AOEUIDHTNS_", ";qjkxbmwvz", ":QJKXBMWVZ"},
}

func init() {
	layoutRows["fi"] = layoutRows["se"]
	layoutRows["no"] = keyRows{"|1234567890+\\", "§!\"#¤%&/()=?`", "qwertyuiopå¨'", "QWERTYUIOPÅ^*", "asdfghjkløæ", "ASDFGHJKLØÆ", "zxcvbnm,.-", "ZXCVBNM;:_"}
	layoutRows["dk"] = keyRows{"½1234567890+´", "§!\"#¤%&/()=?`", "qwertyuiopå¨'", "QWERTYUIOPÅ^*", "asdfghjklæø", "ASDFGHJKLÆØ", "zxcvbnm,.-", "ZXCVBNM;:_"}
}

// layoutNames are what the warning calls a layout.
var layoutNames = map[string]string{
	"de": "German (de)", "ch": "Swiss (ch)", "fr": "French AZERTY (fr)", "be": "Belgian AZERTY (be)",
	"gb": "British (gb)", "es": "Spanish (es)", "it": "Italian (it)", "se": "Swedish (se)",
	"fi": "Finnish (fi)", "no": "Norwegian (no)", "dk": "Danish (dk)", "dvorak": "Dvorak",
}

// keyPos is where a character is typed: row index (0..7, odd = shifted)
// and column; ok false when the rows do not have it.
func keyPos(rows keyRows, r rune) (int, int, bool) {
	for i, row := range rows {
		col := 0
		for _, x := range row {
			if x == r {
				return i, col, true
			}
			col++
		}
	}
	return 0, 0, false
}

// layoutDiff lists, for each configured layout that is not US, the
// characters of p that are typed on another key there than on the US
// keymap of a boot prompt (or are missing from one of them). Unknown
// layouts are listed with every character outside a–z, A–Z and 0–9.
func layoutDiff(layouts []string, p []byte) map[string][]rune {
	out := map[string][]rune{}
	for _, l := range layouts {
		rows, known := layoutRows[l]
		set := map[rune]bool{}
		for i := 0; i < len(p); { // not range string(p): that copies the passphrase into the heap
			r, n := utf8.DecodeRune(p[i:])
			i += n
			if r == ' ' {
				continue
			}
			ui, uc, uok := keyPos(usRows, r)
			if !known {
				if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
					set[r] = true
				}
				continue
			}
			li, lc, lok := keyPos(rows, r)
			if !uok || !lok || ui != li || uc != lc {
				set[r] = true
			}
		}
		if len(set) == 0 {
			continue
		}
		var rs []rune
		for r := range set {
			rs = append(rs, r)
		}
		sort.Slice(rs, func(i, j int) bool { return rs[i] < rs[j] })
		out[l] = rs
	}
	return out
}

// nonUS are the characters of p the US keymap of a boot prompt cannot type.
func nonUS(p []byte) []rune {
	set := map[rune]bool{}
	for i := 0; i < len(p); { // not range string(p): that copies the passphrase into the heap
		r, n := utf8.DecodeRune(p[i:])
		i += n
		if _, _, ok := keyPos(usRows, r); !ok && r != ' ' {
			set[r] = true
		}
	}
	var rs []rune
	for r := range set {
		rs = append(rs, r)
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i] < rs[j] })
	return rs
}

// ReadKeyboardLayouts returns the keyboard layouts configured on this
// machine other than US, as XKB names ("de", "fr", "dvorak"): from
// /etc/default/keyboard (Debian's console and X setting),
// /etc/vconsole.conf and `localectl status`. It reads files and runs
// localectl: call it from a tea.Cmd.
func ReadKeyboardLayouts() []string {
	seen := map[string]bool{}
	var out []string
	add := func(name string) {
		if l := normLayout(name); l != "" && !seen[l] {
			seen[l] = true
			out = append(out, l)
		}
	}
	vars := readShellVars("/etc/default/keyboard")
	variants := strings.Split(vars["XKBVARIANT"], ",")
	for i, l := range strings.Split(vars["XKBLAYOUT"], ",") {
		if i < len(variants) && strings.Contains(variants[i], "dvorak") {
			l = "dvorak"
		}
		add(l)
	}
	add(readShellVars("/etc/vconsole.conf")["KEYMAP"])
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if b, err := exec.CommandContext(ctx, "localectl", "status").Output(); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
			if !ok {
				continue
			}
			switch strings.TrimSpace(k) {
			case "VC Keymap", "X11 Layout":
				for _, l := range strings.Split(strings.TrimSpace(v), ",") {
					add(l)
				}
			}
		}
	}
	return out
}

// normLayout maps an XKB layout or console keymap name to the XKB name
// used above; "" for US and unset.
func normLayout(s string) string {
	s = strings.ToLower(strings.Trim(strings.TrimSpace(s), `"'`))
	if s == "" || s == "n/a" || s == "(unset)" {
		return ""
	}
	if strings.Contains(s, "dvorak") {
		return "dvorak"
	}
	base := strings.FieldsFunc(s, func(r rune) bool { return r == '-' || r == '_' || r == '(' || r == '.' })[0]
	switch base {
	case "us", "en":
		return ""
	case "uk":
		return "gb"
	case "sv":
		return "se"
	case "sg", "sf":
		return "ch"
	case "dk", "da":
		return "dk"
	case "azerty":
		return "fr"
	}
	if strings.HasPrefix(s, "de_ch") || strings.HasPrefix(s, "fr_ch") {
		return "ch"
	}
	return base
}

// readShellVars reads KEY=value lines of a shell variables file.
func readShellVars(path string) map[string]string {
	m := map[string]string{}
	f, err := os.Open(path)
	if err != nil {
		return m
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if ok && !strings.HasPrefix(k, "#") {
			m[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"'`)
		}
	}
	return m
}
