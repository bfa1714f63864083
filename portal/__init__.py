"""The partners' front door: email intake, partner portal, staff console and downloads (issue 4)."""
