package core

import (
	"fmt"
	"os"
	"strings"
	"time"

	"luksdock/disk"
	"luksdock/inventory"
	"luksdock/luks"
)

// LUKSDevice is the LUKS device on a disk at path with the given content
// and partitions: the whole disk, a partition's node when the kernel made
// one, else the partition's byte range of the disk (an image file, or a
// disk whose table the kernel did not read).
func LUKSDevice(path string, whole disk.Signature, parts []disk.Partition) (luks.Device, bool) {
	if whole.Type == disk.SigLUKS {
		return luks.Device{Path: path}, true
	}
	for _, p := range parts {
		if p.Content.Type != disk.SigLUKS {
			continue
		}
		if p.InKernel && p.Path != "" {
			if _, err := os.Stat(p.Path); err == nil {
				return luks.Device{Path: p.Path}, true
			}
		}
		return luks.Device{Path: path, Base: p.Start, Size: p.Size}, true
	}
	return luks.Device{}, false
}

// DiskMetadata reads the luksdock token of the LUKS volume on a disk
// (nil without one: LUKS1, or not prepared by luksdock). It needs no key.
func DiskMetadata(path string, whole disk.Signature, parts []disk.Partition) *luks.Metadata {
	d, ok := LUKSDevice(path, whole, parts)
	if !ok {
		return nil
	}
	m, err := luks.ReadMetadataDevice(d)
	if err != nil {
		return nil
	}
	return &m
}

// RecordFromToken is the inventory record of a disk this machine did not
// prepare, learned from its token when it was docked here as seenAs.
func RecordFromToken(uuid string, m luks.Metadata, seenAs string, now time.Time) inventory.Record {
	return inventory.Record{
		LUKSUUID: uuid, Label: m.Label, Set: m.Set,
		Drive:    inventory.Drive{Model: m.DriveModel, Serial: m.DriveSerial},
		Prepared: m.Prepared, PreparedOn: m.PreparedOn, RecoveryKey: m.RecoveryKey,
		SeenHere: true, LastSeen: now.UTC().Truncate(time.Second), LastSeenAs: seenAs,
	}
}

// RecogniseToken says what the LUKS disk with uuid is: the inventory's record
// when it has one, else what the disk's own token says (a disk prepared on
// another machine: known), else that luksdock does not know it.
func RecogniseToken(f *inventory.File, uuid, setOnDisk string, m *luks.Metadata, now time.Time) (desc string, known bool) {
	if f != nil && f.Find(uuid) != nil {
		return inventory.Recognise(f, uuid, setOnDisk, now)
	}
	if m == nil {
		return inventory.Recognise(f, uuid, setOnDisk, now)
	}
	return DescribeToken(*m), true
}

// DescribeToken says what a disk's token says, for people: "backups01,
// set offsite, prepared 2026-11-23 on nas1 (another machine); first seen
// here".
func DescribeToken(m luks.Metadata) string {
	s := m.Label
	if m.Set != "" {
		s += ", set " + m.Set
	}
	s += ", prepared " + m.Prepared.Local().Format("2006-01-02")
	host, _ := os.Hostname()
	if m.PreparedOn != "" && m.PreparedOn != host {
		s += " on " + m.PreparedOn
	}
	var hosts []string
	for _, h := range m.Hosts {
		hosts = append(hosts, h.Name)
	}
	if len(hosts) > 0 {
		s += fmt.Sprintf(", unlocks on its own on %s", strings.Join(hosts, ", "))
	}
	return s + " (read from the disk's luksdock token)"
}
