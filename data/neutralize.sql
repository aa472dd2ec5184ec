-- A neutralized copy of a database never contacts a bank: connections stop syncing and lose
-- their tokens (the code also refuses every provider call while database.is_neutralized is set).
UPDATE account_online_link
   SET auto_sync = false,
       state = 'disconnected',
       encrypted_credentials = NULL;
UPDATE account_online_provider
   SET encrypted_secrets = NULL;
