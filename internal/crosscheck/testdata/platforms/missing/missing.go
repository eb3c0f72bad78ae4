package missing

import _ "example.com/platforms/nowhere"
