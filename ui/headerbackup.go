package ui

import "luksdock/pipeline"

// checkHeaderBackup is the Options screen's check of the header-backup path
// (Config.CheckHeaderBackup's default): the pipeline's own check, which
// expands a relative path and refuses the target itself or a file stored on
// it, so the screen and preflight refuse the same paths.
func checkHeaderBackup(target, backup string) (string, error) {
	return pipeline.CheckHeaderBackupPath(target, backup)
}
