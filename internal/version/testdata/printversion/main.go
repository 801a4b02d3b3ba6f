// Command printversion prints version.String(), for the package's tests.
package main

import (
	"fmt"

	"luksdock/internal/version"
)

func main() { fmt.Println(version.String()) }
