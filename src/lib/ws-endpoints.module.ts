import {
  BeforeApplicationShutdown,
  Inject,
  Logger,
  Module,
  OnApplicationShutdown,
  OnModuleInit,
} from '@nestjs/common';
import { CloseCode } from './context/close-code.enum';
import type { WsEndpointsModuleOptions } from './interfaces/ws-endpoint-options.interface';
import {
  assertValidModuleOptions,
  DEFAULT_HANDSHAKE_TIMEOUT,
  DEFAULT_SHUTDOWN_TIMEOUT,
} from './ws-endpoints.defaults';
import {
  ApplicationConfig,
  DiscoveryModule,
  HttpAdapterHost,
  ModuleRef,
} from '@nestjs/core';
import { WsEndpointExplorer } from './discovery/ws-endpoint-explorer';
import {
  ENDPOINT_MAPPED,
  MISSING_HTTP_SERVER,
  SHUTTING_DOWN,
} from './messages';
import { SessionRegistry } from './session/session-registry';
import { ResumableSessionRegistry } from './reliable/resumable-session-registry';
import { EnvelopeEndpoints } from './reliable/envelope-endpoints';
import { Broadcaster } from './groups/broadcaster';
import { GroupRegistry } from './groups/group-registry';
import { GroupHub } from './groups/group-hub';
import { PresenceTracker } from './groups/presence-tracker';
import { Presence } from './groups/presence';
import { MemoryBackplane } from './backplane/memory-backplane';
import { WS_BACKPLANE } from './constants';
import { SessionRunner } from './session/session-runner';
import { WsMetrics } from './metrics/ws-metrics';
import { WebSocketSessions } from './session/websocket-sessions';
import {
  bySpecificity,
  platformHandler,
  routeFirst,
} from './upgrade/platform-handler';
import { UpgradeDispatcher } from './upgrade/upgrade-dispatcher';
import { WsRouteFactory } from './upgrade/ws-route-factory';
import {
  ConfigurableModuleClass,
  WS_ENDPOINTS_OPTIONS,
} from './ws-endpoints.module-definition';

/**
 * Serves the `@Ws` methods of the application's controllers.
 *
 * @example
 * @Module({ imports: [WsEndpointsModule.forRoot({ maxPayload: 64 * 1024 })], controllers: [ChatController] })
 * export class AppModule {}
 * @publicApi
 */
@Module({
  imports: [DiscoveryModule],
  providers: [
    WsEndpointExplorer,
    UpgradeDispatcher,
    SessionRunner,
    SessionRegistry,
    ResumableSessionRegistry,
    EnvelopeEndpoints,
    GroupRegistry,
    GroupHub,
    PresenceTracker,
    Presence,
    Broadcaster,
    {
      provide: WS_BACKPLANE,
      useFactory: (options: WsEndpointsModuleOptions) =>
        options.backplane ?? new MemoryBackplane(),
      inject: [WS_ENDPOINTS_OPTIONS],
    },
    WebSocketSessions,
    WsMetrics,
  ],
  exports: [WebSocketSessions, Broadcaster, Presence, WS_BACKPLANE, WsMetrics],
})
export class WsEndpointsModule
  extends ConfigurableModuleClass
  implements OnModuleInit, BeforeApplicationShutdown, OnApplicationShutdown
{
  private readonly logger = new Logger(WsEndpointsModule.name);

  constructor(
    private readonly adapterHost: HttpAdapterHost,
    private readonly moduleRef: ModuleRef,
    private readonly config: ApplicationConfig,
    private readonly explorer: WsEndpointExplorer,
    private readonly runner: SessionRunner,
    private readonly dispatcher: UpgradeDispatcher,
    private readonly sessions: SessionRegistry,
    @Inject(WS_ENDPOINTS_OPTIONS)
    private readonly options: WsEndpointsModuleOptions,
  ) {
    super();
  }

  /** Registers each endpoint's route with the HTTP adapter and starts claiming upgrades. */
  onModuleInit(): void {
    const adapter = this.adapterHost.httpAdapter;
    const server = adapter?.getHttpServer();
    if (!server) throw new Error(MISSING_HTTP_SERVER);
    assertValidModuleOptions(this.options);
    const endpoints = this.explorer.explore();
    const factory = new WsRouteFactory(
      this.moduleRef,
      this.config,
      adapter,
      this.runner,
    );
    const routes = endpoints.flatMap((endpoint) => {
      const handler = factory.create(endpoint);
      return endpoint.paths.map((path) => ({ path, handler, endpoint }));
    });
    for (const { path, handler, endpoint } of bySpecificity(routes)) {
      adapter.get(path, handler);
      this.logger.log(ENDPOINT_MAPPED(path, endpoint.name));
    }
    const paths = routes.map(({ path }) => path);
    routeFirst(adapter, paths.length);
    this.dispatcher.attach(
      server,
      paths,
      platformHandler(adapter),
      this.options.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT,
    );
  }

  /**
   * Before the HTTP server closes: new upgrades and those still in the pipeline get 503, every
   * session is closed with 1001 and its signal aborted, and handlers are awaited up to
   * `shutdownTimeout` before the rest are dropped.
   */
  async beforeApplicationShutdown(): Promise<void> {
    await this.sessions.drain(
      CloseCode.GoingAway,
      SHUTTING_DOWN,
      this.options.shutdownTimeout ?? DEFAULT_SHUTDOWN_TIMEOUT,
    );
  }

  onApplicationShutdown(): void {
    this.dispatcher.dispose();
  }
}
