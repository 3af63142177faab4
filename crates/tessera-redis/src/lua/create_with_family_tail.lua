end
local out = create_session()
if out[1] == 'ok' then family_write(F) end
return out
