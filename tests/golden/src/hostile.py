def evil():
	x = "</text><script>alert(1)</script>"  # ]]> <![CDATA[ ÿþ bad bytes
		y = "&amp;  ctrl" + 'quote'
    return x
