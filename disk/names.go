package disk

import (
	"fmt"
	"strings"
)

// ATATranslated says that the disk answered INQUIRY through a SCSI-ATA
// translation (a SATA disk, or a USB bridge that passes the drive's
// identity): its vendor is the placeholder "ATA" and its model the drive's.
func (d Disk) ATATranslated() bool { return d.Vendor == "ATA" }

// VendorModel is the disk's maker and model as people read them: "vendor
// model", without the SCSI-ATA translation's placeholder vendor "ATA".
func (d Disk) VendorModel() string {
	vendor := d.Vendor
	if d.ATATranslated() {
		vendor = ""
	}
	return strings.TrimSpace(vendor + " " + d.Model)
}

// String names the USB device: "152d:2329 JMicron USB to ATA/ATAPI Bridge".
func (u USBInfo) String() string {
	return strings.TrimSpace(fmt.Sprintf("%s:%s %s %s", u.VendorID, u.ProductID, u.Manufacturer, u.Product))
}
