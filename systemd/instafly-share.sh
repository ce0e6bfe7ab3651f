#!/bin/sh
# Instafly's shared folder: the drop and enhanced folders as one password-protected Samba share.
#
#   instafly-share.sh FOLDER USER > /etc/samba/instafly.conf
#
# prints the share's section for smb.conf: the share "Instafly" is FOLDER (which holds drop/ and
# enhanced/), open only to the Samba user USER with its password (never to guests); every file
# written through it belongs to USER, so the daemon (running as USER) reads what a laptop or a
# phone drops and the share serves back what the daemon writes. `sudo ./install.sh --system
# --share` installs Debian's Samba, writes this file, includes it from /etc/samba/smb.conf and
# sets the password; the tests run it against a real smbd on a loopback port.
set -eu

[ $# -eq 2 ] || { echo "usage: instafly-share.sh FOLDER USER" >&2; exit 2; }
folder="$1"
user="$2"
case "$folder$user" in
  *"
"*|*"["*|*"]"*) echo "instafly-share.sh: a folder or user name with a newline or bracket" >&2; exit 2 ;;
esac

cat <<CONF
# Written by Instafly (instafly-share.sh); install.sh --share writes it again.
[Instafly]
   comment = Instafly: put photos in drop, take the enhanced ones from enhanced
   path = $folder
   valid users = $user
   force user = $user
   force group = $user
   guest ok = no
   read only = no
   browseable = yes
   # Photos are the household's: readable by the service's user and group only.
   create mask = 0640
   directory mask = 0750
   # Finder and the iPhone Files app leave ._ files and .DS_Store; the drop folder ignores them.
   veto files = /.DS_Store/
   delete veto files = yes
CONF
