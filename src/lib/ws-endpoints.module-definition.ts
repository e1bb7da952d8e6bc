import { ConfigurableModuleBuilder } from '@nestjs/common';
import { WsEndpointsModuleOptions } from './interfaces/ws-endpoint-options.interface';

export const {
  ConfigurableModuleClass,
  MODULE_OPTIONS_TOKEN: WS_ENDPOINTS_OPTIONS,
  OPTIONS_TYPE,
  ASYNC_OPTIONS_TYPE,
} = new ConfigurableModuleBuilder<WsEndpointsModuleOptions>()
  .setClassMethodName('forRoot')
  .setExtras({ isGlobal: true }, (definition, extras) => ({
    ...definition,
    global: extras.isGlobal,
  }))
  .build();
