end
local out = update_session()
if out == 1 then family_write(F) end
return out
