//go:build !race

package luks

// usRaceDetector is true under -race, whose shadow memory multiplies RSS.
const usRaceDetector = false
